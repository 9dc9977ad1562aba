// The runs panel: every run under the server root's runs/ folders, sortable and filterable.
import { PathExt } from '@jupyterlab/coreutils';
import { Widget } from '@lumino/widgets';

import { IRunSummary, listRuns } from './api';

const REFRESH_MS = 5000;
const STATUSES = [
  'running',
  'answered',
  'no_answer',
  'budget',
  'cancelled',
  'error',
  'unfinished'
];
const SORTS: Record<string, (a: IRunSummary, b: IRunSummary) => number> = {
  newest: (a, b) => cmp(b.time, a.time) || cmp(a.path, b.path),
  oldest: (a, b) => cmp(a.time, b.time) || cmp(a.path, b.path),
  question: (a, b) => cmp(a.question.toLowerCase(), b.question.toLowerCase()),
  status: (a, b) => cmp(a.status, b.status) || cmp(b.time, a.time),
  steps: (a, b) => b.steps - a.steps || cmp(b.time, a.time)
};

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export interface IRunsPanelOptions {
  /** Open a run in the viewer. */
  open: (path: string) => void;
  /** Insert a `%r1v4 replay PATH` cell into the active notebook; false when there is none. */
  insertReplay: (run: IRunSummary) => boolean;
}

/** Rows in display order: each run followed by its forks (recursively), forks marked with their depth. */
export function arrange(
  runs: IRunSummary[],
  sort: string
): { run: IRunSummary; depth: number }[] {
  const byId = new Map(runs.map(r => [r.id, r]));
  const children = new Map<string, IRunSummary[]>();
  const roots: IRunSummary[] = [];
  for (const r of runs) {
    const parent = r.parent?.id;
    if (parent && byId.has(parent) && parent !== r.id) {
      children.set(parent, [...(children.get(parent) || []), r]);
    } else {
      roots.push(r);
    }
  }
  const order = SORTS[sort] || SORTS.newest;
  const out: { run: IRunSummary; depth: number }[] = [];
  const seen = new Set<string>();
  const visit = (r: IRunSummary, depth: number) => {
    if (seen.has(r.path)) {
      return;
    }
    seen.add(r.path);
    out.push({ run: r, depth });
    for (const c of (children.get(r.id) || []).sort(SORTS.oldest)) {
      visit(c, depth + 1);
    }
  };
  roots.sort(order).forEach(r => visit(r, 0));
  return out;
}

export class RunsPanel extends Widget {
  constructor(options: IRunsPanelOptions) {
    super();
    this._options = options;
    this.id = 'r1v4-runs';
    this.addClass('r1v4-runs');
    this.title.caption = 'r1v4 runs';
    const controls = document.createElement('div');
    controls.className = 'r1v4-runs-controls';
    this._filter = document.createElement('input');
    this._filter.className = 'jp-mod-styled r1v4-runs-filter';
    this._filter.placeholder = 'Filter: question, answer, model, path';
    this._filter.oninput = () => this._render();
    this._status = document.createElement('select');
    this._status.className = 'jp-mod-styled r1v4-runs-status-filter';
    for (const s of ['', ...STATUSES]) {
      this._status.add(new Option(s ? s.replace('_', ' ') : 'any status', s));
    }
    this._status.onchange = () => this._render();
    this._sort = document.createElement('select');
    this._sort.className = 'jp-mod-styled r1v4-runs-sort';
    for (const s of Object.keys(SORTS)) {
      this._sort.add(new Option(`sort: ${s}`, s));
    }
    this._sort.onchange = () => this._render();
    const refresh = document.createElement('button');
    refresh.className = 'jp-mod-styled r1v4-runs-refresh';
    refresh.textContent = 'Refresh';
    refresh.onclick = () => void this.refresh();
    controls.append(this._filter, this._status, this._sort, refresh);
    this._notice = document.createElement('div');
    this._notice.className = 'r1v4-runs-notice';
    this._list = document.createElement('div');
    this._list.className = 'r1v4-runs-list';
    this.node.append(controls, this._notice, this._list);
  }

  /** Read the list again from the server. */
  async refresh(): Promise<void> {
    try {
      this._runs = await listRuns();
      this._notice.textContent = '';
    } catch (err) {
      this._notice.textContent = `cannot list runs: ${(err as Error).message}`;
    }
    this._render();
  }

  protected onAfterShow(): void {
    void this.refresh();
    this._timer = window.setInterval(() => {
      if (this.isVisible) {
        void this.refresh();
      }
    }, REFRESH_MS);
  }

  protected onAfterHide(): void {
    if (this._timer !== null) {
      window.clearInterval(this._timer);
      this._timer = null;
    }
  }

  dispose(): void {
    this.onAfterHide();
    super.dispose();
  }

  private _render(): void {
    const words = this._filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    const status = this._status.value;
    const shown = this._runs.filter(r => {
      if (status && r.status !== status) {
        return false;
      }
      const hay = [r.question, r.answer || '', r.model, r.mode, r.path]
        .join(' ')
        .toLowerCase();
      return words.every(w => hay.includes(w));
    });
    this._list.textContent = '';
    if (!shown.length) {
      const empty = document.createElement('div');
      empty.className = 'r1v4-runs-empty';
      empty.textContent = this._runs.length
        ? 'No run matches the filter.'
        : 'No runs yet: runs are the .jsonl files in runs/ folders under the server root.';
      this._list.append(empty);
      return;
    }
    for (const { run, depth } of arrange(shown, this._sort.value)) {
      this._list.append(this._row(run, depth));
    }
  }

  private _row(run: IRunSummary, depth: number): HTMLElement {
    const row = document.createElement('div');
    row.className = 'r1v4-runs-row' + (depth ? ' r1v4-fork' : '');
    row.dataset.path = run.path;
    row.dataset.status = run.status;
    if (depth > 1) {
      row.style.marginLeft = `${18 * depth}px`;
    }
    row.title = run.path;
    const q = document.createElement('div');
    q.className = 'r1v4-runs-q';
    const badge = document.createElement('span');
    badge.className = `r1v4-runs-status r1v4-st-${run.status}`;
    badge.textContent = run.status.replace('_', ' ');
    q.append(badge, document.createTextNode(run.question || '(no question)'));
    const a = document.createElement('div');
    a.className = 'r1v4-runs-a';
    a.textContent = run.answer !== null ? `\u2192 ${run.answer}` : '';
    const meta = document.createElement('div');
    meta.className = 'r1v4-runs-meta';
    const fork =
      run.parent && depth ? `fork at step ${run.parent.step} \u00b7 ` : '';
    const when = run.time.replace('T', ' ').replace(/\+00:00$/, ' UTC');
    meta.textContent = `${fork}${run.steps} steps \u00b7 ${run.model || '?'} \u00b7 ${run.mode} \u00b7 ${when} \u00b7 ${PathExt.basename(run.path)}`;
    const replay = document.createElement('button');
    replay.className = 'jp-mod-styled r1v4-runs-replay';
    replay.textContent = 'replay';
    replay.title =
      'Insert a %r1v4 replay cell for this run into the active notebook';
    replay.onclick = ev => {
      ev.stopPropagation();
      this._notice.textContent = this._options.insertReplay(run)
        ? ''
        : 'Open a notebook first: the replay cell goes into the active notebook.';
    };
    row.append(q, a, meta, replay);
    row.onclick = () => this._options.open(run.path);
    return row;
  }

  private _options: IRunsPanelOptions;
  private _runs: IRunSummary[] = [];
  private _filter: HTMLInputElement;
  private _status: HTMLSelectElement;
  private _sort: HTMLSelectElement;
  private _notice: HTMLDivElement;
  private _list: HTMLDivElement;
  private _timer: number | null = null;
}
