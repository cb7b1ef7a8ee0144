"""Roles as Django groups. Permissions are the same in the admin and the API (both check them).

Blinding is a permission too: only roles with ``view_allocation`` see arms, MSC/saline and the
lab's product records (units, processing, their events), which would reveal the arm.
"""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission
from django.db import transaction

LAB = "Lab technician"
QA = "QA / release"
CLINICIAN = "Blinded clinician"
MONITOR = "Monitor"
ADMINISTRATOR = "Administrator"

# View permissions of blinded roles. What they then see of each model (rows, fields, custody
# steps) is decided by the visibility policy, biobank.visibility.
BLINDED_VISIBLE = [
    "study",
    "site",
    "visittype",
    "participant",
    "visit",
    "aspirate",
    "dose",
    "custodyevent",
    "identitycheck",
]
BLINDED_VISIBLE += ["shipment", "shipmentitem", "loggerfile"]
LAB_MODELS = [
    "aspirate",
    "processing",
    "passage",
    "qcresult",
    "freezingrun",
    "productunit",
    "placement",
    "container",
    "storageunit",
    "boxtype",
    "temperaturereading",
    "dose",
    "printjob",
    "shipment",
]


def _codenames() -> dict[str, list[str]]:
    every_view = [
        p.codename
        for p in Permission.objects.filter(
            content_type__app_label="biobank", codename__startswith="view_"
        )
    ]
    blinded_view = [f"view_{m}" for m in BLINDED_VISIBLE]
    lab_write = [f"{verb}_{m}" for m in LAB_MODELS for verb in ("add", "change")]
    return {
        LAB: [
            *every_view,
            *lab_write,
            "view_allocation",
            "prepare_dose",
            # The lab checks the dose against the participant before it leaves (DOMAIN.md).
            "dispatch_dose",
            "add_participant",
            "record_weight",
            "pack_shipment",
            "receive_shipment",
        ],
        QA: [
            *every_view,
            "view_allocation",
            "approve_qc_release",
            "release_dose",
            "lift_quarantine",
            "change_dose",
            "export_audit_trail",
        ],
        CLINICIAN: [
            *blinded_view,
            "view_identitycheck",
            "record_weight",
            "add_aspirate",
            "dispatch_dose",
            "administer_dose",
            "emergency_unblind",
        ],
        MONITOR: [*blinded_view, "view_identitycheck", "view_signature", "export_audit_trail"],
        ADMINISTRATOR: [
            p.codename for p in Permission.objects.filter(content_type__app_label="biobank")
        ],
    }


@transaction.atomic
def roles_sync() -> dict[str, int]:
    """Create or update the role groups so they hold exactly their permissions."""
    from django.apps import apps
    from django.contrib.auth.management import create_permissions

    # Custom permissions exist only after post_migrate; make sure they do before we use them.
    for config in apps.get_app_configs():
        create_permissions(config, verbosity=0)
    counts = {}
    for name, codenames in _codenames().items():
        group, _ = Group.objects.get_or_create(name=name)
        perms = Permission.objects.filter(
            content_type__app_label="biobank", codename__in=set(codenames)
        )
        if name == ADMINISTRATOR:
            perms = perms | Permission.objects.filter(content_type__app_label="auth")
        wanted = set(perms.values_list("pk", flat=True))
        if set(group.permissions.values_list("pk", flat=True)) != wanted:
            group.permissions.set(wanted)
        counts[name] = len(wanted)
    return counts
