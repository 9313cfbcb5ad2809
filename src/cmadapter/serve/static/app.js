// The search page: plain JavaScript against the JSON API (no framework, no build step, works offline).
// Three kinds of search: words, a picture (chosen or dropped on the header), or "more like this" moment of a
// result. ?q=…&k=…&adapter=… or ?like=SEGMENT&t=SECONDS in the page address: a shareable search.
const address = new URLSearchParams(location.search);
const PAGE = Math.min(100, Math.max(1, Number.parseInt(address.get("k") ?? "10", 10) || 10));
const header = document.querySelector("header");
const form = document.getElementById("search-form");
const loginForm = document.getElementById("login-form");
const queryInput = document.getElementById("query");
const adapterSelect = document.getElementById("adapter");
const pictureInput = document.getElementById("picture");
const queryPicture = document.getElementById("query-picture");
const statusLine = document.getElementById("status");
const resultsList = document.getElementById("results");
const moreButton = document.getElementById("more");
const template = document.getElementById("card-template");
let current = null; // {kind: "text" | "image" | "like", q | file | {like, t, label}, adapter, offset}

class NeedsToken extends Error {}

function seconds(t) {
  const m = Math.floor(t / 60);
  const s = (t - 60 * m).toFixed(1).padStart(4, "0");
  return `${m}:${s}`;
}

async function getJSON(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({}));
  if (response.status === 401 && response.headers.get("www-authenticate")) throw new NeedsToken();
  if (!response.ok) {
    const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
    throw new Error(detail || `HTTP ${response.status}`);
  }
  return body;
}

async function loadAdapters() {
  const { adapters, default: preferred } = await getJSON("/api/adapters");
  adapterSelect.replaceChildren();
  for (const name of adapters) adapterSelect.add(new Option(name, name, false, name === preferred));
}

function askForToken() {
  loginForm.hidden = false;
  form.hidden = true;
  statusLine.textContent = "log in with the server's token";
  document.getElementById("token").focus();
}

loginForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = document.getElementById("token").value;
  const response = await fetch("/api/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token }),
  });
  if (response.status !== 204) {
    statusLine.textContent = "wrong token";
    return;
  }
  document.getElementById("token").value = "";
  loginForm.hidden = true;
  form.hidden = false;
  start();
});

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
    // A folder of frames has no playable file and no clip: the API gives null for those links.
    const playButton = node.querySelector(".play");
    if (result.media_url) playButton.addEventListener("click", () => play(node, result));
    else playButton.remove();
    if (result.clip_url) download.href = result.clip_url;
    else download.remove();
  }
  const like = node.querySelector(".like");
  like.title = `videos like this moment (${seconds(result.best_frame_time)}, the frame that matched best)`;
  like.addEventListener("click", () =>
    searchLike(result.segment_id, result.best_frame_time, `${result.name} at ${seconds(result.best_frame_time)}`),
  );
  const others = result.other_hits.length;
  node.querySelector(".others").textContent = others ? `${others} more matching segment${others > 1 ? "s" : ""} in this video` : "";
  node.dataset.video = result.name;
  return node;
}

function request() {
  const { kind, adapter, offset } = current;
  const params = new URLSearchParams({ k: PAGE, offset });
  if (adapter) params.set("adapter", adapter);
  if (kind === "image") {
    const body = new FormData();
    body.append("image", current.file, current.file.name);
    return getJSON(`/api/search/image?${params}`, { method: "POST", body });
  }
  if (kind === "like") {
    params.set("like", current.like);
    params.set("t", current.t);
  } else {
    params.set("q", current.q);
  }
  return getJSON(`/api/search?${params}`);
}

function describe(page) {
  if (page.kind === "image") return `like the picture ${page.query}`;
  if (page.kind === "like") return `like ${current.label}`;
  return `for “${page.query}”`;
}

async function run(append) {
  statusLine.textContent = "searching…";
  moreButton.disabled = true;
  const started = performance.now();
  try {
    const page = await request();
    if (!append) resultsList.replaceChildren();
    for (const result of page.results) resultsList.append(card(result));
    const shown = resultsList.children.length;
    const wall = ((performance.now() - started) / 1000).toFixed(2);
    statusLine.textContent = shown
      ? `${shown} video${shown > 1 ? "s" : ""} ${describe(page)} (${page.adapter}) · search ${page.seconds.total.toFixed(3)} s, page ${wall} s`
      : `nothing found ${describe(page)}`;
    moreButton.hidden = !page.more;
  } catch (error) {
    if (error instanceof NeedsToken) return askForToken();
    statusLine.textContent = `error: ${error.message}`;
    moreButton.hidden = true;
  } finally {
    moreButton.disabled = false;
  }
}

function showPicture(file) {
  const img = queryPicture.querySelector("img");
  if (img.src) URL.revokeObjectURL(img.src);
  if (!file) {
    queryPicture.hidden = true;
    img.removeAttribute("src");
    return;
  }
  img.src = URL.createObjectURL(file);
  queryPicture.querySelector(".caption").textContent = file.name;
  queryPicture.hidden = false;
}

function searchPicture(file) {
  if (!file) return;
  current = { kind: "image", file, adapter: adapterSelect.value, offset: 0 };
  showPicture(file);
  history.replaceState(null, "", location.pathname);
  run(false);
}

function searchLike(segment, t, label) {
  current = { kind: "like", like: segment, t, label, adapter: adapterSelect.value, offset: 0 };
  showPicture(null);
  const shared = new URLSearchParams({ like: segment, t, adapter: current.adapter });
  if (PAGE !== 10) shared.set("k", PAGE);
  history.replaceState(null, "", `?${shared}`);
  window.scrollTo({ top: 0 });
  run(false);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const q = queryInput.value.trim();
  if (!q) {
    statusLine.textContent = "type what to look for, or choose a picture";
    return;
  }
  current = { kind: "text", q, adapter: adapterSelect.value, offset: 0 };
  showPicture(null);
  const shared = new URLSearchParams({ q, adapter: current.adapter });
  if (PAGE !== 10) shared.set("k", PAGE);
  history.replaceState(null, "", `?${shared}`);
  run(false);
});

pictureInput.addEventListener("change", () => {
  searchPicture(pictureInput.files[0]);
  pictureInput.value = ""; // choosing the same file again searches again
});

// Drop a picture anywhere on the header.
for (const name of ["dragenter", "dragover"]) {
  header.addEventListener(name, (event) => {
    if (![...event.dataTransfer.types].includes("Files")) return;
    event.preventDefault();
    header.classList.add("dropping");
  });
}
header.addEventListener("dragleave", () => header.classList.remove("dropping"));
header.addEventListener("drop", (event) => {
  event.preventDefault();
  header.classList.remove("dropping");
  searchPicture(event.dataTransfer.files[0]);
});

moreButton.addEventListener("click", () => {
  current.offset += PAGE;
  run(true);
});

function start() {
  loadAdapters()
    .then(() => {
      if (address.get("adapter")) adapterSelect.value = address.get("adapter");
      if (address.get("like")) {
        const t = Number(address.get("t") ?? "0");
        searchLike(address.get("like"), t, `segment ${address.get("like")} at ${seconds(t)}`);
      } else if (address.get("q")) {
        queryInput.value = address.get("q");
        form.requestSubmit();
      } else {
        statusLine.textContent = "";
      }
    })
    .catch((error) => {
      if (error instanceof NeedsToken) return askForToken();
      statusLine.textContent = `error: ${error.message}`;
    });
}

start();
