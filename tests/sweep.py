"""The blinding sweep: walk every route of the URL conf as a user and look for leaks.

Routes are found, not listed: the sweep walks the URL conf (admin, scan pages, API, labels)
and fills each route's parameters from the data in the database. A route with a parameter
it cannot fill is reported as uncovered, so a new route is either swept or fails the test;
it is never skipped in silence.

A leak is, in any response body (pages, JSON, ZPL/SVG labels, errors): a lab-only
identifier (unit, processing, freezing run, storage unit, container or box), an arm, a word
that tells the treatment (the blinded product name "MSC or 0.9 % NaCl" is allowed), or
cell counts / viability.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.contrib import admin
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from biobank.models import Arm
from biobank.terms import BLINDED_PRODUCT

LAB_CODE = re.compile(r"\b(?:UN|PR|FR|SU|CT|BX)[0-9]{7,}[0-9A-Z*]\b")
TREATMENT_WORDS = re.compile(r"\bBM-MSCs?\b|\bMSCs?\b|placebo|saline|\bNaCl\b", re.IGNORECASE)
COUNT_WORDS = re.compile(r"viabilit|cell[ _-]?(?:count|number)|post[ _-]?thaw", re.IGNORECASE)
ARM_KEYS = re.compile(r"\"arm\"\s*:|\"treatment\"\s*:|\bArm [A-Z]\b")
# An aspirate's lab statuses (expanded or not tells the arm); a blinded role sees "accepted".
LAB_STATUS = re.compile(r"\bin_processing\b|[\"'>]processed[\"'<]|\bIn processing\b")
LABEL_FORMATS = ("zpl", "svg", "png", "pdf")
OTHER_FORMATS = ("json", "jsonl", "csv", "xlsx", "pdf", "svg", "png", "zpl")
TEXT_TYPES = ("text/", "application/json", "application/vnd.oai.openapi", "image/svg")
# Documentation pages describe fields by name (e.g. post_thaw_cell_count); they hold no
# data, so only identifiers and arms are looked for there.
DOCS = ("/api/schema/", "/api/docs/")


@dataclass
class Report:
    requests: int = 0
    leaks: list[str] = field(default_factory=list)
    uncovered: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Route:
    template: str  # "/api/units/{code}/store/"
    params: tuple[str, ...]
    callback: Any
    admin_model: Any  # the model of an admin model route, else None


# --- finding routes --------------------------------------------------------------------------


def _regex_to_template(regex: str) -> str:
    """'^labels/(?P<code>[^/.]+)\\.(?P<fmt>[^/.]+)$' -> 'labels/{code}.{fmt}'."""
    out, i = [], 0
    regex = regex.lstrip("^").rstrip("$").replace("\\Z", "")
    while i < len(regex):
        if regex.startswith("(?P<", i):
            name = regex[i + 4 : regex.index(">", i)]
            depth, j = 0, i
            while j < len(regex):
                if regex[j] == "\\":
                    j += 2
                    continue
                depth += regex[j] == "("
                depth -= regex[j] == ")"
                j += 1
                if depth == 0:
                    break
            out.append("{" + name + "}")
            i = j
        elif regex[i] == "\\":
            out.append(regex[i + 1])
            i += 2
        elif regex[i] in "?*+":
            i += 1
        else:
            out.append(regex[i])
            i += 1
    return "".join(out)


def _piece(pattern: Any) -> str:
    text = str(pattern.pattern)
    if hasattr(pattern.pattern, "regex") and type(pattern.pattern).__name__ == "RegexPattern":
        return _regex_to_template(text)
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", text)


def routes(urlconf: str | None = None) -> Iterator[Route]:
    model_admins = {
        f"admin/{m._meta.app_label}/{m._meta.model_name}/": m for m in admin.site._registry
    }

    def walk(patterns: list[Any], prefix: str) -> Iterator[Route]:
        for p in patterns:
            here = prefix + _piece(p)
            if isinstance(p, URLResolver):
                yield from walk(p.url_patterns, here)
            elif isinstance(p, URLPattern):
                params = tuple(re.findall(r"\{(\w+)\}", here))
                model = next((m for pre, m in model_admins.items() if here.startswith(pre)), None)
                yield Route("/" + here, params, p.callback, model)

    yield from walk(get_resolver(urlconf).url_patterns, "")


# --- filling parameters ----------------------------------------------------------------------


def _codes_by_model() -> dict[Any, list[str]]:
    out = {}
    for model in apps.get_app_config("biobank").get_models():
        names = {f.name for f in model._meta.get_fields()}
        if "code" in names and not model.__name__.startswith("Historical"):
            out[model] = list(model._default_manager.order_by("pk").values_list("code", flat=True))
    return out


def _sample(values: list[Any], n: int = 3) -> list[Any]:
    return values if len(values) <= 2 * n else values[:n] + values[-n:]


class Filler:
    """Values for each route parameter, from the database."""

    def __init__(self, visible_models: set[Any]) -> None:
        self.visible = visible_models
        self.codes = _codes_by_model()
        self.all_codes = [c for codes in self.codes.values() for c in codes]
        self.sampled_codes = [c for codes in self.codes.values() for c in _sample(codes, 2)]

    def _objects(self, model: Any) -> list[Any]:
        pks = list(model._default_manager.order_by("pk").values_list("pk", flat=True))
        return pks if model in self.visible else _sample(pks)

    def values(self, route: Route) -> list[dict[str, Any]] | None:
        """Every combination to request, or None if a parameter cannot be filled."""
        params = set(route.params)
        if not params:
            return [{}]
        model = route.admin_model
        view_model = _view_model(route.callback)
        if model is not None and len(params) == 1 and params != {"version_id"}:
            (name,) = params
            return [{name: pk} for pk in self._objects(model)]
        if model is not None and params == {"pk", "fmt"}:  # a document of one item
            return [{"pk": pk, "fmt": f} for pk in self._objects(model) for f in OTHER_FORMATS]
        if model is not None and params == {"pk", "name"}:  # a named step page of one item
            steps = ("pack", "seal", "ship", "receive", "cancel", "unknown")
            return [{"pk": pk, "name": n} for pk in _sample(self._objects(model), 2) for n in steps]
        if model is not None and params <= {"object_id", "version_id"}:
            pks = self._objects(model)
            if "version_id" in params:
                history = getattr(model, "history", None)
                if history is None:
                    return []
                rows = []
                for pk in _sample(pks, 2):
                    latest = history.filter(**{model._meta.pk.attname: pk}).first()
                    if latest is not None:
                        rows.append({"object_id": pk, "version_id": latest.history_id})
                return rows
            return [{"object_id": pk} for pk in pks]
        if params == {"url"}:  # the admin's catch-all: unknown pages must not leak either
            return [{"url": u} for u in ("biobank/unknown/", *self.sampled_codes[:3])]
        if params == {"app_label"}:
            return [{"app_label": "biobank"}]
        if params == {"content_type_id", "object_id"}:
            from django.contrib.contenttypes.models import ContentType

            ct = ContentType.objects.get(app_label="biobank", model="participant")
            first = apps.get_model("biobank", "Participant").objects.first()
            return [{"content_type_id": ct.pk, "object_id": first.pk if first else 1}]
        if params == {"code", "fmt"} and route.template.startswith("/api/labels/"):
            return [{"code": c, "fmt": f} for c in self.all_codes for f in LABEL_FORMATS]
        if params == {"code", "fmt"}:  # reports and charts: a few items of every kind
            return [{"code": c, "fmt": f} for c in self.sampled_codes for f in OTHER_FORMATS]
        if params == {"fmt"}:
            return [{"fmt": f} for f in OTHER_FORMATS]
        if params == {"rest"}:
            return [{"rest": c} for c in self.sampled_codes]
        if params == {"code"}:
            own = self.codes.get(view_model, []) if view_model is not None else []
            own = own if view_model in self.visible else _sample(own)
            return [{"code": c} for c in dict.fromkeys(own + self.sampled_codes)]
        if params == {"pk"} and view_model is not None:
            return [{"pk": pk} for pk in self._objects(view_model)]
        return None


def _view_model(callback: Any) -> Any:
    cls = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    serializer = getattr(cls, "serializer_class", None)
    meta = getattr(serializer, "Meta", None)
    if meta is not None and hasattr(meta, "model"):
        return meta.model
    queryset = getattr(cls, "queryset", None)
    return getattr(queryset, "model", None)


# --- looking for leaks -----------------------------------------------------------------------


def _arm_texts() -> list[str]:
    texts = []
    for arm in Arm.objects.all():
        texts += [arm.name, arm.description]
    return [t for t in texts if t]


def leaks_in(body: str, url: str, arm_texts: list[str]) -> list[str]:
    found = []
    code = LAB_CODE.search(body)
    if code:
        found.append(f"lab code {code.group(0)}")
    if ARM_KEYS.search(body):
        found.append(f"arm or treatment field {ARM_KEYS.search(body).group(0)!r}")  # type: ignore[union-attr]
    found += [f"arm text {t[:30]!r}" for t in arm_texts if t in body]
    if not url.startswith(DOCS):
        cleaned = body.replace(BLINDED_PRODUCT, "")
        word = TREATMENT_WORDS.search(cleaned)
        if word:
            found.append(f"treatment word {word.group(0)!r}")
        count = COUNT_WORDS.search(cleaned)
        if count:
            found.append(f"cell count or viability {count.group(0)!r}")
        status = LAB_STATUS.search(body)
        if status:
            found.append(f"aspirate lab status {status.group(0)!r}")
    return found


def _body(response: Any) -> str | None:
    kind = response.get("Content-Type", "")
    if not kind.startswith(TEXT_TYPES):
        return None
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode("utf-8", "replace")
    return response.content.decode("utf-8", "replace")


# --- the sweep -------------------------------------------------------------------------------


def _post_bodies(route: Route, url: str, filler: Filler) -> list[dict[str, Any]]:
    """What to POST to a route that takes POST: every code to the scan endpoints, an empty
    body elsewhere (a refusal must not leak either)."""
    if url.startswith("/api/scan/"):
        return [{"code": c} for c in filler.all_codes]
    if url.startswith("/api/labels/batch/"):
        return [{"codes": [c], "format": "zpl"} for c in filler.all_codes]
    if url.startswith("/admin/scan/"):
        return [{"code": c} for c in filler.all_codes]
    return [{}]


def _takes_post(route: Route) -> bool:
    callback = route.callback
    actions = getattr(callback, "actions", None)
    if actions is not None:
        return "post" in actions
    cls = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    return (
        cls is not None
        and hasattr(cls, "post")
        and route.template.startswith(("/api/", "/admin/scan/"))
    )


def sweep(client: Client, user: Any, *, urlconf: str | None = None) -> Report:
    """Request every route as ``user`` (logged in on ``client``) and report leaks, errors
    and uncovered routes."""
    from biobank.visibility import policy_for

    report = Report()
    policy = policy_for(user)
    visible = {m for m in apps.get_app_config("biobank").get_models() if policy.sees_model(m)}
    filler = Filler(visible)
    arm_texts = _arm_texts()

    def check(method: str, url: str, response: Any) -> None:
        report.requests += 1
        if response.status_code >= 500:
            report.errors.append(f"{method} {url}: {response.status_code}")
        body = _body(response)
        if body is None:
            return
        for leak in leaks_in(body, url, arm_texts):
            report.leaks.append(f"{method} {url} ({response.status_code}): {leak}")

    for route in routes(urlconf):
        if route.template.endswith(("/logout/", "/delete/")):
            continue  # logging out would end the sweep; deleting is never offered
        fills = filler.values(route)
        if fills is None:
            report.uncovered.append(f"{route.template} {route.params}")
            continue
        actions = getattr(route.callback, "actions", None)
        for values in fills:
            url = route.template.format(**values)
            if actions is None or "get" in actions:
                check("GET", url, client.get(url))
            if _takes_post(route):
                for body in _post_bodies(route, url, filler):
                    if url.startswith("/admin/"):
                        response = client.post(url, body, follow=True)
                    else:
                        response = client.post(url, json.dumps(body), "application/json")
                    check("POST", url, response)
    return report
