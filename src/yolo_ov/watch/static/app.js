// The cameras page: polls cameras.json once a second and keeps one card per camera.
// Up to MAX_STREAMS cameras get a live MJPEG <img> (a browser holds at most six connections to one server);
// the others, or all with ?mode=snapshot, show snapshot.jpg reloaded when the camera has a new frame.
"use strict";

const POLL_MS = 1000;
const MAX_STREAMS = 4;
const params = new URLSearchParams(location.search);
const cards = new Map();

function cameraUrl(name, what) {
  return `cameras/${encodeURIComponent(name)}/${what}`;
}

function makeCard(cam, streamed) {
  const node = document.getElementById("card").content.firstElementChild.cloneNode(true);
  node.dataset.camera = cam.name;
  node.querySelector(".name").textContent = cam.name;
  const img = node.querySelector("img");
  img.alt = `camera ${cam.name}`;
  img.addEventListener("load", () => node.classList.add("has-frame"));
  const card = { node, img, streamed, seq: 0, loading: false };
  img.addEventListener("load", () => { card.loading = false; });
  img.addEventListener("error", () => {
    card.loading = false;
    if (card.streamed) {  // the stream ended (the server restarted, a viewer limit): open it again shortly
      node.classList.remove("has-frame");
      setTimeout(() => { img.src = `${cameraUrl(cam.name, "stream.mjpg")}?retry=${Date.now()}`; }, 2000);
    }
  });
  if (streamed) {
    img.src = cameraUrl(cam.name, "stream.mjpg");
    node.dataset.mode = "stream";
  } else {
    node.dataset.mode = "snapshot";
  }
  document.getElementById("grid").appendChild(node);
  cards.set(cam.name, card);
  return card;
}

function fmtAge(since) {
  const s = Math.max(0, Date.now() / 1000 - since);
  if (s < 60) return `${s.toFixed(0)} s`;
  if (s < 3600) return `${(s / 60).toFixed(0)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function countsText(counts) {
  const items = [];
  for (const [zone, c] of Object.entries(counts.zones || {})) {
    items.push(`${zone}: ${c.inside} inside, ${c.entered} entered`);
  }
  for (const [line, c] of Object.entries(counts.lines || {})) {
    const parts = Object.entries(c).map(([dir, n]) => `${dir} ${n}`);
    items.push(`${line}: ${parts.length ? parts.join(", ") : "0"}`);
  }
  return items;
}

function eventText(e) {
  const t = new Date(e.time * 1000).toLocaleTimeString();
  if (e.type === "camera") return `${t} camera ${e.state}${e.reason ? ": " + e.reason : ""}`;
  const what = [e.class_name, e.track_id !== undefined ? `#${e.track_id}` : ""].filter(Boolean).join(" ");
  const where = e.zone || e.line || "";
  return `${t} ${e.type} ${what}${where ? " " + where : ""}${e.direction ? " " + e.direction : ""}`;
}

function update(cam) {
  const card = cards.get(cam.name);
  const n = card.node;
  n.dataset.state = cam.state;
  n.querySelector(".state").textContent = cam.state;
  n.querySelector(".reason").textContent = `${cam.reason} (${fmtAge(cam.since)} ago)` +
    (cam.reconnects ? ` · ${cam.reconnects} reconnect${cam.reconnects > 1 ? "s" : ""}` : "");
  n.querySelector(".fps").textContent = `${cam.fps.toFixed(1)} fps`;
  n.querySelector(".latency").textContent =
    cam.latency_s === null ? "latency -" : `latency ${(cam.latency_s * 1000).toFixed(0)} ms`;
  n.querySelector(".frames").textContent =
    `${cam.frames.inferred} inferred, ${cam.frames.dropped} dropped`;
  const counts = n.querySelector(".counts");
  counts.replaceChildren(...countsText(cam.counts).map((text) => {
    const li = document.createElement("li");
    li.textContent = text;
    return li;
  }));
  const events = n.querySelector(".events");
  events.replaceChildren(...cam.recent_events.map((e) => {
    const li = document.createElement("li");
    li.textContent = eventText(e);
    return li;
  }));
  if (!card.streamed && cam.frame_seq > 0 && cam.frame_seq !== card.seq && !card.loading) {
    card.seq = cam.frame_seq;
    card.loading = true;
    card.img.src = `${cameraUrl(cam.name, "snapshot.jpg")}?seq=${cam.frame_seq}`;
  }
}

function updateOutputs(outputs) {
  const names = Object.keys(outputs);
  const section = document.getElementById("outputs");
  section.hidden = names.length === 0;
  section.querySelector("tbody").replaceChildren(...names.map((name) => {
    const o = outputs[name];
    const tr = document.createElement("tr");
    for (const v of [name, o.queued ?? 0, o.sent ?? 0, o.dropped ?? 0, o.retries ?? 0,
                     o.connected === undefined ? "-" : (o.connected ? "yes" : "no")]) {
      const td = document.createElement("td");
      td.textContent = String(v);
      tr.appendChild(td);
    }
    return tr;
  }));
}

async function poll() {
  try {
    const resp = await fetch("cameras.json", { cache: "no-store" });
    if (!resp.ok) throw new Error(`cameras.json: HTTP ${resp.status}`);
    const status = await resp.json();
    const snapshotsOnly = params.get("mode") === "snapshot";
    status.cameras.forEach((cam, i) => {
      if (!cards.has(cam.name)) makeCard(cam, !snapshotsOnly && i < MAX_STREAMS);
      update(cam);
    });
    updateOutputs(status.outputs);
    const live = status.cameras.filter((c) => c.state === "live").length;
    document.getElementById("summary").textContent =
      `${status.cameras.length} camera${status.cameras.length === 1 ? "" : "s"}, ${live} live` +
      (status.stopped ? " · the run has stopped" : "");
    document.body.dataset.state = "ready";
  } catch (err) {
    document.getElementById("summary").textContent = `cannot reach the service: ${err.message}`;
    document.body.dataset.state = "error";
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
