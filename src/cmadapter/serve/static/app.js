// The search page: plain JavaScript against the JSON API (no framework, no build step, works offline).
// ?q=…&k=…&adapter=… in the page address: a shareable search (k: videos per page, default 10).
const address = new URLSearchParams(location.search);
const PAGE = Math.min(100, Math.max(1, Number.parseInt(address.get("k") ?? "10", 10) || 10));
const form = document.getElementById("search-form");
const queryInput = document.getElementById("query");
const adapterSelect = document.getElementById("adapter");
const statusLine = document.getElementById("status");
const resultsList = document.getElementById("results");
const moreButton = document.getElementById("more");
const template = document.getElementById("card-template");
let current = null; // {q, adapter, offset}

function seconds(t) {
  const m = Math.floor(t / 60);
  const s = (t - 60 * m).toFixed(1).padStart(4, "0");
  return `${m}:${s}`;
}

async function getJSON(url) {
  const response = await fetch(url);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
    throw new Error(detail || `HTTP ${response.status}`);
  }
  return body;
}

async function loadAdapters() {
  const { adapters, default: preferred } = await getJSON("/api/adapters");
  for (const name of adapters) {
    const option = new Option(name, name, false, name === preferred);
    adapterSelect.add(option);
  }
}

function frameStrip(hit) {
  const strip = document.createElement("div");
  strip.className = "strip";
  strip.setAttribute("role", "list");
  const top = Math.max(...hit.frame_weights, 1e-9);
  const best = hit.frame_weights.indexOf(Math.max(...hit.frame_weights));
  hit.thumb_urls.forEach((url, i) => {
    const frame = document.createElement("figure");
    frame.className = "frame" + (i === best ? " best" : "");
    frame.setAttribute("role", "listitem");
    frame.style.margin = "0";
    const img = document.createElement("img");
    img.src = url;
    img.loading = "lazy";
    img.alt = `frame at ${seconds(hit.frame_times[i])}, weight ${(100 * hit.frame_weights[i]).toFixed(0)}%`;
    const bar = document.createElement("div");
    bar.className = "weight";
    bar.title = `head weight ${hit.frame_weights[i].toFixed(3)}`;
    const fill = document.createElement("span");
    fill.style.height = `${Math.max(2, (100 * hit.frame_weights[i]) / top)}%`;
    fill.dataset.weight = String(hit.frame_weights[i]);
    bar.append(fill);
    const label = document.createElement("small");
    label.textContent = seconds(hit.frame_times[i]);
    frame.append(img, bar, label);
    strip.append(frame);
  });
  return strip;
}

function play(card, hit) {
  const holder = card.querySelector(".player");
  let video = holder.querySelector("video");
  if (!video) {
    video = document.createElement("video");
    video.controls = true;
    video.muted = true; // browsers let muted videos start without a gesture of their own
    video.preload = "auto";
    video.src = `${hit.media_url}#t=${hit.start},${hit.end}`;
    holder.append(video);
  } else {
    video.currentTime = hit.start;
  }
  video.play().catch(() => {}); // the controls still work when autoplay is refused
  video.focus();
}

function card(result) {
  const node = template.content.firstElementChild.cloneNode(true);
  node.querySelector(".name").textContent = result.name;
  node.querySelector(".range").textContent = `${seconds(result.start)} – ${seconds(result.end)}`;
  node.querySelector(".score").textContent = `score ${result.score.toFixed(3)}`;
  node.querySelector(".strip").replaceWith(frameStrip(result));
  const download = node.querySelector(".download");
  if (result.kind === "image") {
    // A photo: one frame, nothing to play or cut; the link opens the photo itself.
    node.querySelector(".play").remove();
    node.querySelector(".range").textContent = "photo";
    download.textContent = "Open photo";
    download.removeAttribute("download");
    download.href = result.media_url;
  } else {
    node.querySelector(".play").addEventListener("click", () => play(node, result));
    download.href = result.clip_url;
  }
  const others = result.other_hits.length;
  node.querySelector(".others").textContent = others ? `${others} more matching segment${others > 1 ? "s" : ""} in this video` : "";
  node.dataset.video = result.name;
  return node;
}

async function run(append) {
  const { q, adapter, offset } = current;
  const params = new URLSearchParams({ q, k: PAGE, offset });
  if (adapter) params.set("adapter", adapter);
  statusLine.textContent = "searching…";
  moreButton.disabled = true;
  const started = performance.now();
  try {
    const page = await getJSON(`/api/search?${params}`);
    if (!append) resultsList.replaceChildren();
    for (const result of page.results) resultsList.append(card(result));
    const shown = resultsList.children.length;
    const wall = ((performance.now() - started) / 1000).toFixed(2);
    statusLine.textContent = shown
      ? `${shown} video${shown > 1 ? "s" : ""} for “${page.query}” (${page.adapter}) · search ${page.seconds.total.toFixed(3)} s, page ${wall} s`
      : `nothing found for “${page.query}”`;
    moreButton.hidden = !page.more;
  } catch (error) {
    statusLine.textContent = `error: ${error.message}`;
    moreButton.hidden = true;
  } finally {
    moreButton.disabled = false;
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const q = queryInput.value.trim();
  if (!q) return;
  current = { q, adapter: adapterSelect.value, offset: 0 };
  const shared = new URLSearchParams({ q, adapter: current.adapter });
  if (PAGE !== 10) shared.set("k", PAGE);
  history.replaceState(null, "", `?${shared}`);
  run(false);
});

moreButton.addEventListener("click", () => {
  current.offset += PAGE;
  run(true);
});

loadAdapters()
  .then(() => {
    if (address.get("adapter")) adapterSelect.value = address.get("adapter");
    if (address.get("q")) {
      queryInput.value = address.get("q");
      form.requestSubmit();
    }
  })
  .catch((error) => {
    statusLine.textContent = `error: ${error.message}`;
  });
