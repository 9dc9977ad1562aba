// The front end of RunView: applies the kernel's patches to a DOM of cards.
// All HTML comes from the kernel's renderer (escaped there); streamed text is added as text nodes.
const STORES = new Map();

function fromHtml(html) {
  const t = document.createElement("template");
  t.innerHTML = html;
  return t.content.firstElementChild;
}

function cardEl(root, c) {
  return root.querySelector(`:scope > .r1v4-cards > [data-c="${c}"]`);
}

function setCard(root, c, html) {
  const el = fromHtml(html);
  const old = cardEl(root, c);
  if (old) old.replaceWith(el);
  else root.querySelector(":scope > .r1v4-cards").appendChild(el);
}

function segEl(card, s) {
  return card && card.querySelector(`.r1v4-segs > [data-s="${s}"]`);
}

function apply(store, op) {
  const root = store.root;
  const kind = op[0];
  if (kind === "h") {
    root.querySelector(":scope > .r1v4-headbox").innerHTML = op[1];
    store.headAt = performance.now();
  } else if (kind === "c") {
    setCard(root, op[1], op[2]);
  } else if (kind === "f") {
    const card = cardEl(root, op[1]);
    const foot = card && card.querySelector(":scope > .r1v4-foot");
    if (foot) foot.replaceWith(fromHtml(op[2]));
  } else if (kind === "s") {
    const card = cardEl(root, op[1]);
    if (!card) return;
    const old = segEl(card, op[2]);
    if (op[3] === null) {
      if (old) old.classList.remove("r1v4-open");
      return;
    }
    const el = fromHtml(op[3]);
    if (old) old.replaceWith(el);
    else card.querySelector(".r1v4-segs").appendChild(el);
  } else if (kind === "a") {
    const seg = segEl(cardEl(root, op[1]), op[2]);
    const body = seg && seg.querySelector(".r1v4-body");
    if (body) body.appendChild(document.createTextNode(op[3]));
  }
}

function reset(store, head, cards) {
  const root = store.root;
  root.innerHTML = '<div class="r1v4-headbox"></div><div class="r1v4-cards"></div>';
  root.querySelector(".r1v4-headbox").innerHTML = head;
  store.headAt = performance.now();
  cards.forEach((html, c) => setCard(root, c, html));
}

// The header's clock while a run goes on: the kernel sends the seconds with each header, and the view counts
// on from there, so the time moves during a long tool call too.
function tick(store) {
  const clock = store.root.querySelector(":scope > .r1v4-headbox .r1v4-clock");
  if (!clock) return;
  const secs = parseFloat(clock.dataset.s || "0") + (performance.now() - (store.headAt || 0)) / 1000;
  const b = clock.querySelector("b");
  if (b) b.textContent = secs.toFixed(1);
}

function showFull(url) {
  const overlay = document.createElement("div");
  overlay.className = "r1v4-overlay";
  const img = document.createElement("img");
  if (url.startsWith("data:image/")) img.src = url;
  overlay.appendChild(img);
  overlay.addEventListener("click", () => overlay.remove());
  document.body.appendChild(overlay);
}

function onMessage(store, model, msg) {
  if (msg.full !== undefined) {
    showFull(msg.url);
    return;
  }
  if (msg.reset) {
    reset(store, msg.reset[0], msg.reset[1]);
    store.seq = msg.seq;
    store.stale = false;
    return;
  }
  if (msg.seq !== store.seq + 1) {
    if (!store.stale) {
      store.stale = true;
      model.send({ op: "hello" });
    }
    return;
  }
  store.seq = msg.seq;
  for (const op of msg.ops) apply(store, op);
}

function storeFor(model) {
  const key = model.get("run_key");
  if (!STORES.has(key)) {
    const root = document.createElement("div");
    root.className = "r1v4-run r1v4-live";
    root.innerHTML = '<div class="r1v4-headbox"></div><div class="r1v4-cards"></div>';
    STORES.set(key, { root, seq: -1, stale: false, headAt: performance.now() });
  }
  return STORES.get(key);
}

export default {
  initialize({ model }) {
    const store = storeFor(model);
    const handler = (msg) => onMessage(store, model, msg);
    model.on("msg:custom", handler);
    // A view opened later (a reloaded page) has missed the patches: ask for the whole state.
    const timer = setTimeout(() => {
      if (store.seq < 0) model.send({ op: "hello" });
    }, 300);
    return () => {
      clearTimeout(timer);
      model.off("msg:custom", handler);
    };
  },
  render({ model, el }) {
    const store = storeFor(model);
    el.classList.add("r1v4-widget");
    const hide = document.createElement("style");
    hide.textContent = `[data-r1v4-snapshot="${CSS.escape(model.get("run_key"))}"]{display:none}`;
    el.appendChild(hide);
    el.appendChild(store.root);
    const click = (e) => {
      const stop = e.target.closest(".r1v4-stop");
      if (stop) {
        stop.disabled = true;
        stop.textContent = "Stopping...";
        model.send({ op: "stop" });
        return;
      }
      const img = e.target.closest("img[data-sha]");
      if (img) model.send({ op: "full", sha: img.dataset.sha });
    };
    el.addEventListener("click", click);
    const clock = setInterval(() => tick(store), 1000);
    return () => {
      clearInterval(clock);
      el.removeEventListener("click", click);
    };
  },
};
