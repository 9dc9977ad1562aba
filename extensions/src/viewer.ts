// The trajectory viewer: the server's rendered run in a frame that cannot run script, followed live.
import {
  ABCWidgetFactory,
  DocumentRegistry,
  DocumentWidget
} from '@jupyterlab/docregistry';
import { Widget } from '@lumino/widgets';

import { cardsSince, imageBlob, trajectoryPage } from './api';

/**
 * The frame's sandbox: no allow-scripts, so nothing in the run's HTML can ever execute (the renderer
 * escapes it; this is the second wall). allow-same-origin lets this extension append cards to the frame's
 * document (live follow without re-rendering); allow-popups lets http(s) result links open in a new tab.
 */
export const SANDBOX = 'allow-same-origin allow-popups allow-popups-to-escape-sandbox';
const POLL_MS = 1000;

export class TrajectoryView extends Widget {
  constructor(path: string) {
    super();
    this.path = path;
    this.addClass('r1v4-viewer');
    this._bar = document.createElement('div');
    this._bar.className = 'r1v4-viewer-bar';
    this._state = document.createElement('span');
    this._state.className = 'r1v4-viewer-state';
    this._state.textContent = 'loading...';
    this._again = document.createElement('button');
    this._again.className = 'jp-mod-styled r1v4-viewer-refresh';
    this._again.textContent = 'Refresh';
    this._again.title = 'Read the file again and follow it while it grows';
    this._again.onclick = () => void this.load();
    this._bar.append(this._state, this._again);
    this.frame = document.createElement('iframe');
    this.frame.className = 'r1v4-viewer-frame';
    this.frame.setAttribute('sandbox', SANDBOX);
    this.frame.setAttribute('referrerpolicy', 'no-referrer');
    this.frame.addEventListener('load', () => this._onFrameLoad());
    this.node.append(this._bar, this.frame);
  }

  readonly path: string;
  readonly frame: HTMLIFrameElement;

  /** Draw the whole run once, then poll for the cards after the last one shown until the run ends. */
  async load(): Promise<void> {
    this._stop();
    this._error(null);
    let page: string;
    try {
      page = await trajectoryPage(this.path);
    } catch (err) {
      this._error(String((err as Error).message || err));
      return;
    }
    this._loaded = new Promise(resolve => (this._resolveLoad = resolve));
    this.frame.srcdoc = page;
    await this._loaded;
    this._following = true;
    await this._poll();
  }

  dispose(): void {
    this._stop();
    super.dispose();
  }

  private get _run(): HTMLElement | null {
    return this.frame.contentDocument?.querySelector('.r1v4-run') ?? null;
  }

  private _cardCount(): number {
    const run = this._run;
    return run ? run.querySelectorAll(':scope > .r1v4-card').length : 0;
  }

  private _onFrameLoad(): void {
    const doc = this.frame.contentDocument;
    if (doc) {
      // listeners added from here run in this page, not in the sandboxed document
      doc.addEventListener('click', ev => this._zoom(ev));
    }
    if (this._resolveLoad) {
      this._resolveLoad();
      this._resolveLoad = null;
    } else if (!this.isDisposed) {
      // the frame reloaded its srcdoc (moved in the DOM): fetch what the first page did not hold
      void this._poll(false);
    }
  }

  /** Append the cards that landed since the last poll; the header is replaced, nothing else redrawn. */
  private async _poll(schedule = true): Promise<void> {
    if (this.isDisposed) {
      return;
    }
    const since = this._cardCount();
    let data;
    try {
      data = await cardsSince(this.path, since);
    } catch (err) {
      this._state.textContent = `stopped following: ${(err as Error).message}`;
      this._following = false;
      return;
    }
    const run = this._run;
    if (!run || this.isDisposed) {
      return;
    }
    if (data.count < since) {
      void this.load(); // the file was rewritten shorter: start over
      return;
    }
    const doc = this.frame.contentDocument!;
    const scroller = doc.scrollingElement || doc.documentElement;
    const atBottom =
      scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
    for (const card of data.cards) {
      run.insertAdjacentHTML('beforeend', card);
    }
    const head = run.querySelector(':scope > .r1v4-head');
    if (head) {
      head.outerHTML = data.header;
    }
    if (data.cards.length && atBottom && since > 0) {
      scroller.scrollTop = scroller.scrollHeight;
    }
    const steps = run.querySelectorAll(
      ':scope > .r1v4-model, :scope > .r1v4-tool, :scope > .r1v4-note'
    ).length;
    if (data.done) {
      this._following = false;
      this._state.textContent = `${data.status.replace('_', ' ')}, ${steps} steps`;
      this._state.className = 'r1v4-viewer-state r1v4-follow-done';
      return;
    }
    if (data.status !== 'running') {
      // the server's rule, the same as the runs panel's: no end record and no growth for idle_limit_s
      this._following = false;
      this._state.textContent = `stopped following: the file has not grown for ${data.idle_limit_s} s (${steps} steps, no end record)`;
      this._state.className = 'r1v4-viewer-state r1v4-follow-idle';
      return;
    }
    this._state.textContent = `following the run as it is written: ${steps} steps`;
    this._state.className = 'r1v4-viewer-state r1v4-follow-on';
    if (schedule && this._following) {
      this._timer = window.setTimeout(() => void this._poll(), POLL_MS);
    }
  }

  private _stop(): void {
    this._following = false;
    if (this._timer !== null) {
      window.clearTimeout(this._timer);
      this._timer = null;
    }
  }

  private _error(message: string | null): void {
    this.node.querySelector('.r1v4-viewer-error')?.remove();
    if (message !== null) {
      const box = document.createElement('div');
      box.className = 'r1v4-viewer-error';
      box.textContent = `Cannot show ${this.path}: ${message}`;
      this.node.insertBefore(box, this.frame);
      this._state.textContent = 'not shown';
    }
  }

  /** A click on a thumbnail shows the image at full resolution, fetched by hash from the server. */
  private async _zoom(ev: MouseEvent): Promise<void> {
    const img = (ev.target as Element | null)?.closest?.('img.r1v4-thumb');
    const sha = img?.getAttribute('data-sha');
    if (!sha) {
      return;
    }
    let blob: Blob;
    try {
      blob = await imageBlob(this.path, sha);
    } catch {
      return;
    }
    const url = URL.createObjectURL(blob);
    const overlay = document.createElement('div');
    overlay.className = 'r1v4-zoom';
    const big = document.createElement('img');
    big.src = url;
    big.alt = img!.getAttribute('alt') || '';
    overlay.append(big);
    overlay.onclick = () => {
      overlay.remove();
      URL.revokeObjectURL(url);
    };
    this.node.append(overlay);
  }

  private _bar: HTMLDivElement;
  private _state: HTMLSpanElement;
  private _again: HTMLButtonElement;
  private _timer: number | null = null;
  private _following = false;
  private _loaded: Promise<void> = Promise.resolve();
  private _resolveLoad: (() => void) | null = null;
}

/** Makes a viewer for trajectory files; the document's text is not used (the server renders it). */
export class TrajectoryFactory extends ABCWidgetFactory<
  DocumentWidget<TrajectoryView>,
  DocumentRegistry.IModel
> {
  protected createNewWidget(
    context: DocumentRegistry.Context
  ): DocumentWidget<TrajectoryView> {
    const content = new TrajectoryView(context.localPath);
    const widget = new DocumentWidget({ content, context });
    widget.addClass('r1v4-viewer-doc');
    void context.ready.then(() => content.load());
    return widget;
  }
}
