// r1v4-nb's JupyterLab extension: a kernel-free viewer for trajectory files and a runs panel.
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { PathExt } from '@jupyterlab/coreutils';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { LabIcon } from '@jupyterlab/ui-components';

import { IRunSummary } from './api';
import { RunsPanel } from './runs';
import { TrajectoryFactory } from './viewer';

export const FACTORY = 'r1v4 Trajectory';
export const FILE_TYPE = 'r1v4-trajectory';

const runIcon = new LabIcon({
  name: 'r1v4-nb:run',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16"><g class="jp-icon3" fill="#616161">' +
    '<rect x="3" y="4" width="18" height="4" rx="1"/><rect x="3" y="10" width="12" height="4" rx="1"/>' +
    '<rect x="3" y="16" width="15" height="4" rx="1"/></g></svg>'
});

/** The replay magic for a run, its path relative to the notebook's folder (the kernel's working folder). */
export function replayLine(notebookPath: string, runPath: string): string {
  const rel = PathExt.relative(PathExt.dirname(notebookPath), runPath);
  return `%r1v4 replay ${/\s/.test(rel) ? JSON.stringify(rel) : rel}`;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'r1v4-nb:plugin',
  description:
    'Opens r1v4 trajectories without a kernel, follows running runs and lists every run.',
  autoStart: true,
  optional: [INotebookTracker],
  activate: (app: JupyterFrontEnd, notebooks: INotebookTracker | null) => {
    // New runs are <id>.r1v4.jsonl; older ones are <YYYYMMDD-HHMMSS-hex8>[...].jsonl (the run id).
    app.docRegistry.addFileType({
      name: FILE_TYPE,
      displayName: 'r1v4 trajectory',
      extensions: ['.r1v4.jsonl'],
      pattern: '^\\d{8}-\\d{6}-[0-9a-f]{8}[^/]*\\.jsonl$',
      mimeTypes: ['application/x-r1v4-trajectory'],
      fileFormat: 'text',
      contentType: 'file',
      icon: runIcon
    });
    const factory = new TrajectoryFactory({
      name: FACTORY,
      label: 'r1v4 Trajectory Viewer',
      fileTypes: [FILE_TYPE, 'jsonl', 'json'],
      defaultFor: [FILE_TYPE],
      readOnly: true
    });
    factory.widgetCreated.connect((_, widget) => {
      widget.title.icon = runIcon;
    });
    app.docRegistry.addWidgetFactory(factory);

    const panel = new RunsPanel({
      open: path =>
        void app.commands.execute('docmanager:open', {
          path,
          factory: FACTORY
        }),
      insertReplay: (run: IRunSummary) => {
        const nb = notebooks?.currentWidget;
        if (!nb) {
          return false;
        }
        NotebookActions.insertBelow(nb.content);
        const cell = nb.content.activeCell;
        if (!cell) {
          return false;
        }
        cell.model.sharedModel.setSource(replayLine(nb.context.localPath, run.path));
        app.shell.activateById(nb.id);
        return true;
      }
    });
    panel.title.icon = runIcon;
    app.shell.add(panel, 'left', { rank: 650 });
  }
};

export default plugin;
