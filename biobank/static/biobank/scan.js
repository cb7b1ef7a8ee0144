/* Scan pages: keep every keystroke, answer with a sound.
 *
 * A keyboard-wedge scanner types the code and Enter, fast, and the next scan may follow at
 * once. So the page never reloads while scanning: Enter queues the code, the queue posts one
 * scan at a time, and only the parts of the page marked data-live are swapped in. The scan
 * field stays in the DOM and keeps focus, so the next scan's keystrokes are never lost.
 */
(function () {
  "use strict";
  var form = document.getElementById("scan-form");
  var input = document.getElementById("scan-input");
  var root = document.getElementById("scan-root");
  var muteKey = "biobank-mute:" + (root ? root.dataset.user : "");
  var queue = [];
  var busy = false;

  // --- sound --------------------------------------------------------------------------------
  // Tests and other scripts can watch window.biobankSounds (every sound asked for, muted too).
  window.biobankSounds = window.biobankSounds || [];
  var audio = null;
  var TONES = {
    ok: [[880, 0.12, "sine"]],
    warn: [[660, 0.12, "triangle"], [660, 0.12, "triangle"]],
    error: [[220, 0.25, "square"], [180, 0.35, "square"]],
  };

  function muted() {
    try { return window.localStorage.getItem(muteKey) === "1"; } catch (e) { return false; }
  }

  function play(level) {
    var tones = TONES[level] || TONES.ok;
    window.biobankSounds.push({ level: level, muted: muted() });
    document.dispatchEvent(new CustomEvent("biobank:sound", { detail: { level: level } }));
    if (muted()) return;
    try {
      var Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) return;
      audio = audio || new Ctx();
      var t = audio.currentTime + 0.01;
      tones.forEach(function (tone) {
        var osc = audio.createOscillator();
        var gain = audio.createGain();
        osc.type = tone[2];
        osc.frequency.value = tone[0];
        gain.gain.setValueAtTime(0.2, t);
        gain.gain.exponentialRampToValueAtTime(0.001, t + tone[1]);
        osc.connect(gain).connect(audio.destination);
        osc.start(t);
        osc.stop(t + tone[1]);
        t += tone[1] + 0.06;
      });
    } catch (e) { /* no audio device: the colour still tells */ }
  }

  function announce() {
    var banner = document.getElementById("scan-feedback");
    if (banner && banner.dataset.level) play(banner.dataset.level);
  }

  function showMute() {
    var button = document.getElementById("scan-mute");
    if (!button) return;
    var off = muted();
    button.textContent = off ? button.dataset.off : button.dataset.on;
    button.setAttribute("aria-pressed", off ? "true" : "false");
  }

  // --- the scan queue -----------------------------------------------------------------------
  function swap(html) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    document.querySelectorAll("[data-live]").forEach(function (el) {
      var fresh = doc.getElementById(el.id);
      if (fresh) el.replaceWith(fresh);
    });
    announce();
  }

  function next() {
    if (busy || !queue.length) return;
    busy = true;
    var data = new FormData(form);
    data.set("code", queue.shift());
    document.body.classList.add("scan-busy");
    fetch(form.action || window.location.href, {
      method: "POST", body: data, credentials: "same-origin",
      headers: { "X-Requested-With": "fetch" },
    })
      .then(function (r) { return r.text(); })
      .then(swap)
      .catch(function () { play("error"); })
      .then(function () {
        busy = false;
        document.body.classList.remove("scan-busy");
        if (document.activeElement !== input && !document.activeElement.closest("input, select, textarea")) input.focus();
        next();
      });
  }

  if (form && input) {
    input.addEventListener("keydown", function (e) {
      if (e.key !== "Enter") return;
      e.preventDefault();
      var code = input.value;
      input.value = "";
      if (!code.trim()) return;
      queue.push(code);
      next();
    });
    input.focus();
    document.addEventListener("click", function (e) {
      if (!e.target.closest("a, button, input, select, textarea, label")) input.focus();
    });
  }
  var mute = document.getElementById("scan-mute");
  if (mute) {
    mute.addEventListener("click", function () {
      try { window.localStorage.setItem(muteKey, muted() ? "0" : "1"); } catch (e) { /* private mode */ }
      showMute();
      input && input.focus();
    });
  }
  showMute();
  announce();  // the answer to a scan posted without script (or a command button)
})();
