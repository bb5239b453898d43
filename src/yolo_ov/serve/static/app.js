// yolo-ov serve: the web page. Plain JS, no build step.
// Sends the picked/dropped/captured image to POST /predict, draws what comes
// back (boxes, labels, masks, keypoints, oriented boxes), shows the JSON and
// the request time, and polls GET /stats for live server figures.
"use strict";

const $ = (id) => document.getElementById(id);
const els = {
  model: $("model"), conf: $("conf"), confValue: $("conf-value"), key: $("key"), file: $("file"), drop: $("drop"),
  camera: $("camera"), cameraBox: $("camera-box"), video: $("video"), snap: $("snap"), live: $("live"),
  cameraOff: $("camera-off"), status: $("status"), canvas: $("canvas"), elapsed: $("elapsed"),
  serverTiming: $("server-timing"), labels: $("labels"), json: $("json"), stats: document.querySelector("#stats tbody"),
  modelsInfo: $("models-info"),
};

// Ultralytics' palette (the same colours yolo-ov draws with), as RGB.
const PALETTE = ["#ff3838", "#ff9d97", "#ff701f", "#ffb21d", "#cfd231", "#48f90a", "#92cc17", "#3ddb86",
  "#1a9334", "#00d4bb", "#2c99a8", "#00c2ff", "#344593", "#6473ff", "#0018ec", "#8438ff", "#520085", "#cb38ff",
  "#ff95c8", "#ff37c7"];
const color = (id) => PALETTE[((id % PALETTE.length) + PALETTE.length) % PALETTE.length];
// COCO keypoint skeleton (1-based pairs, as Ultralytics draws it).
const SKELETON = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9],
  [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]];

els.key.value = sessionStorage.getItem("yolo-ov-key") || "";
els.key.addEventListener("change", () => sessionStorage.setItem("yolo-ov-key", els.key.value));
els.conf.addEventListener("input", () => { els.confValue.textContent = Number(els.conf.value).toFixed(2); });

function headers() {
  return els.key.value ? { Authorization: `Bearer ${els.key.value}` } : {};
}

function setState(state, message) {
  document.body.dataset.state = state;
  els.status.textContent = message;
}

async function errorText(response) {
  try { return (await response.json()).error || response.statusText; } catch { return response.statusText; }
}

// -- models -------------------------------------------------------------------------
async function loadModels() {
  const response = await fetch("models", { headers: headers() });
  if (!response.ok) { setState("error", `GET /models: ${response.status} ${await errorText(response)}`); return; }
  const { models } = await response.json();
  // A model repository may serve several versions of one name: each gets its own entry, named with its version.
  const versions = {};
  for (const m of models) versions[m.name] = (versions[m.name] || 0) + 1;
  const title = (m) => (versions[m.name] > 1 ? `${m.name} v${m.version}` : m.name);
  els.model.replaceChildren(...models.map((m) => {
    const option = new Option(`${title(m)} (${m.task})`, m.name);
    if (versions[m.name] > 1) option.dataset.version = m.version;
    return option;
  }));
  els.modelsInfo.textContent = models.map((m) => `${title(m)}: ${m.device} ${m.mode}, ${m.streams} streams, `
    + `${m.requests_in_flight} requests, ${m.inference_precision} on ${m.execution_devices.join(", ")}`).join(" · ");
}

// -- predict ------------------------------------------------------------------------
let busy = false;

async function detect(blob, name) {
  if (busy) return;
  busy = true;
  setState("busy", `detecting ${name} ...`);
  const bitmap = await createImageBitmap(blob).catch(() => null);
  const form = new FormData();
  form.append("file", blob, name);
  const params = new URLSearchParams({ model: els.model.value, conf: els.conf.value });
  const chosen = els.model.selectedOptions[0];
  if (chosen && chosen.dataset.version) params.set("version", chosen.dataset.version);
  const t0 = performance.now();
  try {
    const response = await fetch(`predict?${params}`, { method: "POST", body: form, headers: headers() });
    const elapsed = performance.now() - t0;
    els.elapsed.textContent = `${elapsed.toFixed(1)} ms`;
    els.serverTiming.textContent = serverTiming(response.headers.get("Server-Timing"));
    if (!response.ok) {
      els.json.textContent = "";
      setState("error", `${response.status}: ${await errorText(response)}`);
      return;
    }
    const record = await response.json();
    els.json.textContent = JSON.stringify(record, null, 2);
    draw(bitmap, record);
    showLabels(record);
    const n = (record.detections || []).length;
    const by = `${response.headers.get("X-Model-Name")} v${response.headers.get("X-Model-Version")}`;
    setState("done", `${name}: ${n} detection${n === 1 ? "" : "s"} in ${elapsed.toFixed(1)} ms (${by})`);
  } catch (err) {
    setState("error", `request failed: ${err}`);
  } finally {
    busy = false;
  }
}

function serverTiming(value) {
  if (!value) return "";
  const parts = Object.fromEntries(value.split(",").map((p) => {
    const [name, dur] = p.trim().split(";dur=");
    return [name, Number(dur)];
  }));
  const bits = ["total", "inference"].filter((k) => k in parts).map((k) => `${k} ${parts[k].toFixed(1)} ms`);
  return bits.length ? `(server: ${bits.join(", ")})` : "";
}

function showLabels(record) {
  const items = (record.detections || []).map((d) => {
    const li = document.createElement("li");
    li.textContent = `${d.class_name} ${d.confidence.toFixed(2)}`;
    li.style.background = color(d.class_id);
    li.dataset.classId = d.class_id;
    return li;
  });
  for (const t of record.top5 || []) {  // classification records
    const li = document.createElement("li");
    li.textContent = `${t.class_name} ${Number(t.confidence).toFixed(2)}`;
    li.style.background = color(t.class_id);
    items.push(li);
  }
  els.labels.replaceChildren(...items);
}

// -- drawing ---------------------------------------------------------------------------
function draw(bitmap, record) {
  const ctx = els.canvas.getContext("2d");
  const w = record.width || (bitmap && bitmap.width) || 640;
  const h = record.height || (bitmap && bitmap.height) || 480;
  els.canvas.width = w;
  els.canvas.height = h;
  ctx.clearRect(0, 0, w, h);
  if (bitmap) ctx.drawImage(bitmap, 0, 0, w, h);
  const lw = Math.max(Math.round((w + h) / 2 * 0.003), 2);
  for (const d of record.detections || []) {
    const c = color(d.class_id);
    if (d.mask) drawMask(ctx, d.mask, c);
    if (d.segments || d.polygon) drawPolygon(ctx, d.segments || d.polygon, c, lw, true);
    if (d.corners || d.xyxyxyxy) drawPolygon(ctx, d.corners || d.xyxyxyxy, c, lw, false);
    else if (d.xywhr || d.obb) drawRotated(ctx, d.xywhr || d.obb, c, lw);
    else drawBox(ctx, d.box, c, lw);
    if (d.keypoints) drawKeypoints(ctx, d.keypoints, c, lw);
    drawLabel(ctx, d, c, lw);
  }
}

function drawBox(ctx, [x1, y1, x2, y2], c, lw) {
  ctx.strokeStyle = c;
  ctx.lineWidth = lw;
  ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
}

function drawLabel(ctx, d, c, lw) {
  const text = `${d.class_name} ${d.confidence.toFixed(2)}`;
  ctx.font = `${Math.max(lw * 6, 12)}px system-ui, sans-serif`;
  const tw = ctx.measureText(text).width + 6;
  const th = Math.max(lw * 6, 12) + 4;
  const [x1, y1] = d.box;
  const y = y1 - th >= 0 ? y1 - th : y1;
  ctx.fillStyle = c;
  ctx.fillRect(x1, y, tw, th);
  ctx.fillStyle = "#fff";
  ctx.textBaseline = "top";
  ctx.fillText(text, x1 + 3, y + 2);
}

function drawPolygon(ctx, points, c, lw, fill) {
  const rings = Array.isArray(points[0]) && Array.isArray(points[0][0]) ? points : [points];
  ctx.strokeStyle = c;
  ctx.lineWidth = lw;
  for (const ring of rings) {
    const pts = Array.isArray(ring[0]) ? ring : pairs(ring);
    if (pts.length < 2) continue;
    ctx.beginPath();
    pts.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.closePath();
    if (fill) { ctx.globalAlpha = 0.35; ctx.fillStyle = c; ctx.fill(); ctx.globalAlpha = 1; }
    ctx.stroke();
  }
}

function pairs(flat) {
  const out = [];
  for (let i = 0; i + 1 < flat.length; i += 2) out.push([flat[i], flat[i + 1]]);
  return out;
}

function drawRotated(ctx, [cx, cy, w, h, r], c, lw) {
  ctx.save();
  ctx.translate(cx, cy);
  ctx.rotate(r);
  ctx.strokeStyle = c;
  ctx.lineWidth = lw;
  ctx.strokeRect(-w / 2, -h / 2, w, h);
  ctx.restore();
}

function drawKeypoints(ctx, kpts, c, lw) {
  const visible = (k) => k && (k.length < 3 || k[2] >= 0.5);
  ctx.strokeStyle = c;
  ctx.lineWidth = Math.max(lw - 1, 1);
  if (kpts.length === 17) {
    for (const [a, b] of SKELETON) {
      const p = kpts[a - 1], q = kpts[b - 1];
      if (!visible(p) || !visible(q)) continue;
      ctx.beginPath(); ctx.moveTo(p[0], p[1]); ctx.lineTo(q[0], q[1]); ctx.stroke();
    }
  }
  ctx.fillStyle = "#fff";
  for (const k of kpts) {
    if (!visible(k)) continue;
    ctx.beginPath(); ctx.arc(k[0], k[1], lw + 1.5, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
  }
}

// COCO compressed RLE ({"size": [h, w], "counts": "..."}) -> overlay pixels.
function drawMask(ctx, rle, c) {
  const [h, w] = rle.size;
  const counts = typeof rle.counts === "string" ? rleFromString(rle.counts) : rle.counts;
  const img = ctx.createImageData(w, h);
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16));
  let pos = 0;
  counts.forEach((run, i) => {
    if (i % 2 === 1) {
      for (let k = pos; k < pos + run; k++) {
        const y = k % h, x = Math.floor(k / h), o = (y * w + x) * 4;
        img.data[o] = r; img.data[o + 1] = g; img.data[o + 2] = b; img.data[o + 3] = 110;
      }
    }
    pos += run;
  });
  const layer = new OffscreenCanvas(w, h);
  layer.getContext("2d").putImageData(img, 0, 0);
  ctx.drawImage(layer, 0, 0, ctx.canvas.width, ctx.canvas.height);
}

function rleFromString(s) {
  const counts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0, k = 0, more = true;
    while (more) {
      const ch = s.charCodeAt(p) - 48;
      x |= (ch & 0x1f) << (5 * k);
      more = (ch & 0x20) !== 0;
      p++; k++;
      if (!more && (ch & 0x10)) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

// -- inputs -------------------------------------------------------------------------------
els.file.addEventListener("change", () => {
  const f = els.file.files[0];
  if (f) detect(f, f.name);
});
els.drop.addEventListener("dragover", (e) => { e.preventDefault(); els.drop.classList.add("over"); });
els.drop.addEventListener("dragleave", () => els.drop.classList.remove("over"));
els.drop.addEventListener("drop", (e) => {
  e.preventDefault();
  els.drop.classList.remove("over");
  const f = e.dataTransfer.files[0];
  if (f) detect(f, f.name);
});

let stream = null;
els.camera.addEventListener("click", async () => {
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (err) {
    setState("error", `camera: ${err.message || err}`);
    return;
  }
  els.video.srcObject = stream;
  els.cameraBox.hidden = false;
});
els.cameraOff.addEventListener("click", () => {
  els.live.checked = false;
  if (stream) stream.getTracks().forEach((t) => t.stop());
  stream = null;
  els.cameraBox.hidden = true;
});

function captureFrame() {
  const v = els.video;
  if (!v.videoWidth) return Promise.resolve(null);
  const c = new OffscreenCanvas(v.videoWidth, v.videoHeight);
  c.getContext("2d").drawImage(v, 0, 0);
  return c.convertToBlob({ type: "image/jpeg", quality: 0.9 });
}

async function snap() {
  const blob = await captureFrame();
  if (blob) await detect(blob, "camera.jpg");
}
els.snap.addEventListener("click", snap);
els.live.addEventListener("change", async () => {
  while (els.live.checked && stream) {
    await snap();
    await new Promise((r) => setTimeout(r, 30));
  }
});

// -- live server figures -------------------------------------------------------------------------
let last = null;

async function pollStats() {
  try {
    const response = await fetch("stats", { headers: headers() });
    if (response.ok) renderStats(await response.json());
  } catch { /* the server may be restarting; try again next tick */ }
}

function renderStats(now) {
  const rows = Object.entries(now.models).map(([name, m]) => {
    const prev = last && last.models[name];
    const dt = last ? Math.max(now.time - last.time, 1e-3) : 0;
    const rate = (key) => (prev && dt ? ((m[key] - prev[key]) / dt).toFixed(1) : "-");
    const tr = document.createElement("tr");
    tr.dataset.model = name;
    for (const v of [name, rate("success"), rate("images"), m.queued, m.in_flight, m.success, m.fail, m.rejected]) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.append(td);
    }
    return tr;
  });
  els.stats.replaceChildren(...rows);
  last = now;
}

loadModels().then(pollStats);
setInterval(pollStats, 1000);
