/**
 * The ftkit JupyterLab plugin: a "Fine-tuning runs" tab in the left side panel, restored with the
 * layout, the commands behind its buttons (also in the command palette under "Fine-tuning"), and
 * the main-area views they open: a comparison of runs, a sweep's trials, a run's errors, its label
 * issues, its train.log; and the export of a checkpoint (the dialog that chooses how, then the job's progress
 * under the checkpoint).
 */

import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Clipboard,
  CommandToolbarButton,
  Dialog,
  ICommandPalette,
  MainAreaWidget,
  showDialog,
  showErrorMessage
} from '@jupyterlab/apputils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { LabIcon, SidePanel, refreshIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';
import * as React from 'react';

import { ILabelIssueReport, IRunSummary, ISweepSummary } from './api';
import { ServerRunsApi } from './client';
import { CompareView } from './compare';
import { ErrorView } from './errors-view';
import { askExport } from './export-dialog';
import { checkpointName, isActiveExport, runExports } from './exports';
import { epochKey, LabelIssues } from './label-issues';
import { LabelIssuesView } from './label-issues-view';
import { LogView } from './log';
import { RunsModel } from './model';
import { CommandIDs } from './commands';
import { RunsPanel } from './panel';
import { Remote } from './remote';
import { canDelete, ERRORS_SPLIT, hasErrors } from './run-state';
import { SweepModel } from './sweep';
import { SweepView } from './sweep-view';
import { RemoteWidget } from './widgets';

export { RunsModel } from './model';

const PANEL_ID = 'ftkit-runs';
const CATEGORY = 'Fine-tuning';

const runsIcon = new LabIcon({
  name: 'ftkit:runs',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">' +
    '<path class="jp-icon3" fill="#616161" d="M3 17h4v4H3zm7-6h4v10h-4zm7-8h4v18h-4z"/></svg>'
});

interface IRunArgs {
  runId?: string;
  step?: number;
  /** Runs to compare (default: those ticked in the panel). */
  runIds?: string[];
  /** The export to stop (default: the run's latest one at work). */
  exportId?: string;
  /** The sweep to show (default: the selected run's). */
  sweep?: string;
}

/** Lines of train.log a log view shows. */
const LOG_LINES = 2000;

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'ftkit:runs-panel',
  description: 'Fine-tuning runs and checkpoints in the left side panel.',
  autoStart: true,
  optional: [ILayoutRestorer, ICommandPalette, INotebookTracker, IDocumentManager],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null,
    notebooks: INotebookTracker | null,
    docManager: IDocumentManager | null
  ) => {
    const { commands, shell } = app;
    const api = new ServerRunsApi();
    const panel = new SidePanel();
    const model = new RunsModel({ api, isActive: () => panel.isVisible });

    const view = new RunsPanel(model, commands);
    view.title.label = 'Runs';
    panel.id = PANEL_ID;
    panel.addClass('ftkit-SidePanel');
    panel.title.icon = runsIcon;
    panel.title.caption = 'Fine-tuning runs';
    const heading = new Widget();
    heading.addClass('ftkit-Heading');
    heading.node.textContent = 'Fine-tuning runs';
    panel.header.addWidget(heading);
    panel.toolbar.addItem(
      'refresh',
      new CommandToolbarButton({ commands, id: CommandIDs.refresh, label: '', caption: 'Refresh runs' })
    );
    panel.addWidget(view);
    panel.disposed.connect(() => model.dispose());
    shell.add(panel, 'left', { rank: 650 });
    restorer?.add(panel, PANEL_ID);

    /** The run (and checkpoint) a command acts on: its arguments, else the panel's selection. */
    const target = (args: IRunArgs) => {
      const runId = args.runId ?? model.selected?.id;
      if (!runId) {
        return null;
      }
      const run = model.runs.find(r => r.id === runId);
      const checkpoints = model.detail(runId)?.checkpoints ?? [];
      const checkpoint =
        args.step !== undefined
          ? checkpoints.find(c => c.step === args.step)
          : checkpoints[checkpoints.length - 1];
      return { runId, run, checkpoint, name: run?.name ?? runId };
    };
    const report = (title: string) => (error: unknown) =>
      void showErrorMessage(title, error instanceof Error ? error.message : String(error));
    const confirm = async (title: string, body: string, label: string) => {
      const result = await showDialog({
        title,
        body,
        buttons: [Dialog.cancelButton(), Dialog.warnButton({ label })]
      });
      return result.button.accept;
    };

    /** Open main-area views by what they show, so a second click reveals the view instead of opening another. */
    const views = new Map<string, MainAreaWidget<RemoteWidget<unknown>>>();
    let opened = 0;
    const openView = <T>(
      key: string,
      remote: Remote<T>,
      view: (data: T) => JSX.Element,
      follow: string[],
      followKey?: (run: IRunSummary) => string
    ) => {
      const open = views.get(key);
      if (open) {
        remote.dispose();
        shell.activateById(open.id);
        return;
      }
      const content = new RemoteWidget(remote, view) as RemoteWidget<unknown>;
      const widget = new MainAreaWidget({ content });
      widget.id = `ftkit-view-${++opened}`;
      widget.title.label = remote.title;
      widget.title.icon = runsIcon;
      widget.title.closable = true;
      views.set(key, widget);
      widget.disposed.connect(() => views.delete(key));
      shell.add(widget, 'main');
      shell.activateById(widget.id);
      remote.follow(model, follow, followKey);
      void remote.refresh();
    };

    commands.addCommand(CommandIDs.show, {
      label: 'Show Fine-tuning Runs',
      caption: 'Open the fine-tuning runs side panel',
      execute: () => shell.activateById(PANEL_ID)
    });
    commands.addCommand(CommandIDs.refresh, {
      label: 'Refresh Fine-tuning Runs',
      icon: refreshIcon,
      execute: () => model.refresh()
    });
    commands.addCommand(CommandIDs.stop, {
      label: 'Stop Fine-tuning Run',
      caption: 'Ask the selected run to save a checkpoint and stop',
      isEnabled: args => {
        const run = target(args as IRunArgs)?.run;
        return !!run && (run.status === 'running' || run.status === 'queued');
      },
      execute: async args => {
        const t = target(args as IRunArgs);
        if (t) {
          await model.stop(t.runId).catch(report(`Could not stop ${t.name}`));
        }
      }
    });
    commands.addCommand(CommandIDs.deleteRun, {
      label: 'Delete Fine-tuning Run…',
      caption: 'Delete a finished run with its checkpoints and logs (stop a running one first)',
      isEnabled: args => canDelete(target(args as IRunArgs)?.run), // as the row shows its button
      execute: async args => {
        const t = target(args as IRunArgs);
        if (t && (await confirm('Delete run?', `Delete the run "${t.name}" with its checkpoints and logs? This cannot be undone.`, 'Delete'))) {
          await model.deleteRun(t.runId).catch(report(`Could not delete ${t.name}`));
        }
      }
    });
    commands.addCommand(CommandIDs.deleteCheckpoint, {
      label: 'Delete Checkpoint…',
      isEnabled: args => !!target(args as IRunArgs)?.checkpoint,
      execute: async args => {
        const t = target(args as IRunArgs);
        if (t?.checkpoint && (await confirm('Delete checkpoint?', `Delete checkpoint ${t.checkpoint.step} of "${t.name}"? This cannot be undone.`, 'Delete'))) {
          await model.deleteCheckpoint(t.runId, t.checkpoint.step).catch(report('Could not delete the checkpoint'));
        }
      }
    });
    commands.addCommand(CommandIDs.exportCheckpoint, {
      label: 'Export Checkpoint…',
      caption: 'Write the checkpoint as one GGUF (llama.cpp, Ollama) or ONNX file, checked against the model',
      isEnabled: args => {
        const t = target(args as IRunArgs);
        return !!t?.checkpoint && !!model.detail(t.runId)?.export_format;
      },
      execute: async args => {
        const t = target(args as IRunArgs);
        const detail = t ? model.detail(t.runId) : undefined;
        if (!t?.checkpoint || !detail?.export_format) {
          return;
        }
        const checkpoint = checkpointName(t.checkpoint);
        const quants = detail.export_format === 'gguf' ? detail.export_quants ?? [] : [];
        const request = await askExport({ runName: t.name, checkpoint, format: detail.export_format, quants });
        if (request) {
          await model.startExport(t.runId, request).catch(report(`Could not export ${checkpoint} of ${t.name}`));
        }
      }
    });
    /** The export a stop acts on: its id, else the run's latest one at work. */
    const exportTarget = (args: IRunArgs) => {
      const t = target(args);
      const working = runExports(t ? model.detail(t.runId) : undefined).filter(isActiveExport);
      const exportId = args.exportId ?? working[working.length - 1]?.id;
      return t && exportId ? { runId: t.runId, exportId } : null;
    };
    commands.addCommand(CommandIDs.stopExport, {
      label: 'Stop Checkpoint Export',
      caption: 'Stop an export at work; its partial files are removed',
      isEnabled: args => !!exportTarget(args as IRunArgs),
      execute: async args => {
        const e = exportTarget(args as IRunArgs);
        if (e) {
          await model.stopExport(e.runId, e.exportId).catch(report('Could not stop the export'));
        }
      }
    });
    commands.addCommand(CommandIDs.copySnippet, {
      label: 'Copy Code to Load Checkpoint',
      isEnabled: args => !!target(args as IRunArgs)?.checkpoint?.snippet,
      execute: args => {
        const t = target(args as IRunArgs);
        if (t?.checkpoint?.snippet) {
          Clipboard.copyToSystem(t.checkpoint.snippet);
        }
      }
    });
    commands.addCommand(CommandIDs.insertSnippet, {
      label: 'Insert Code to Load Checkpoint into Notebook',
      isEnabled: args => !!target(args as IRunArgs)?.checkpoint?.snippet && !!notebooks?.currentWidget,
      execute: args => {
        const t = target(args as IRunArgs);
        const notebook = notebooks?.currentWidget;
        if (!t?.checkpoint?.snippet || !notebook) {
          return;
        }
        NotebookActions.insertBelow(notebook.content);
        notebook.content.activeCell?.model.sharedModel.setSource(t.checkpoint.snippet);
        shell.activateById(notebook.id);
      }
    });
    commands.addCommand(CommandIDs.openConfig, {
      label: 'Open Fine-tuning Run Config',
      isEnabled: args => !!target(args as IRunArgs),
      execute: async args => {
        const t = target(args as IRunArgs);
        if (!t) {
          return;
        }
        try {
          const config = await api.config(t.runId);
          if (config.server_path !== null && docManager) {
            docManager.openOrReveal(config.server_path);
          } else {
            await showDialog({
              title: `Config of ${t.name}`,
              body: React.createElement('pre', { className: 'ftkit-ConfigText', title: config.path }, config.text),
              buttons: [Dialog.okButton({ label: 'Close' })]
            });
          }
        } catch (error) {
          report(`Could not open the config of ${t.name}`)(error);
        }
      }
    });

    commands.addCommand(CommandIDs.compare, {
      label: 'Compare Fine-tuning Runs',
      caption: 'Open the ticked runs side by side: the config keys that differ, final metrics, curves',
      isEnabled: args => ((args as IRunArgs).runIds ?? model.checked).length >= 2,
      execute: args => {
        const ids = [...((args as IRunArgs).runIds ?? model.checked)];
        if (ids.length < 2) {
          return;
        }
        const remote = new Remote(() => api.compare(ids), `Compare ${ids.length} runs`);
        openView(`compare:${ids.join(',')}`, remote, data => React.createElement(CompareView, { data }), ids);
      }
    });
    const sweepOf = (args: IRunArgs) => args.sweep ?? model.selected?.sweep ?? null;
    commands.addCommand(CommandIDs.openSweep, {
      label: 'Show Fine-tuning Sweep',
      caption: "A sweep's trials (settings, status, metric; the best marked) and the metric against each searched setting",
      isEnabled: args => !!sweepOf(args as IRunArgs),
      execute: args => {
        const name = sweepOf(args as IRunArgs);
        if (!name) {
          return;
        }
        const key = `sweep:${name}`;
        // loaded again every few seconds while the sweep works (new trials appear), resting while hidden
        const sweep = new SweepModel(api, name, { isActive: () => !!views.get(key)?.isVisible });
        const render = (summary: ISweepSummary) =>
          React.createElement(SweepView, {
            summary,
            model: sweep,
            onCompare: runIds => void commands.execute(CommandIDs.compare, { runIds }),
            onStop: () => void sweep.stop().catch(report(`Could not stop sweep ${name}`))
          });
        const members = model.runs.filter(run => run.sweep === name).map(run => run.id);
        openView(key, sweep.remote, render, members);
      }
    });
    /** A command that opens a view of one run (its log, its errors) in the main area. */
    const addRunView = <T>(
      id: string,
      options: { label: string; caption: string; view: string; enabled?: (run: IRunSummary | undefined) => boolean },
      load: (runId: string) => Promise<T>,
      render: (data: T) => JSX.Element
    ) =>
      commands.addCommand(id, {
        label: options.label,
        caption: options.caption,
        isEnabled: args => {
          const t = target(args as IRunArgs);
          return !!t && (options.enabled?.(t.run) ?? true);
        },
        execute: args => {
          const t = target(args as IRunArgs);
          if (t) {
            const remote = new Remote(() => load(t.runId), `${t.name} · ${options.view}`);
            openView(`${options.view}:${t.runId}`, remote, render, [t.runId]);
          }
        }
      });
    addRunView(
      CommandIDs.openLog,
      {
        label: 'Open Fine-tuning Run Log',
        caption: "The end of the run's train.log, following it while the run trains",
        view: 'train.log'
      },
      runId => api.log(runId, LOG_LINES),
      log => React.createElement(LogView, { log })
    );
    addRunView(
      CommandIDs.openErrors,
      {
        label: 'Show Fine-tuning Run Errors',
        caption: 'What a finished run got wrong on its test split, from its saved predictions',
        view: 'errors',
        enabled: hasErrors // as the row shows its button: a run with saved test predictions
      },
      runId => api.errors(runId, ERRORS_SPLIT),
      report => React.createElement(ErrorView, { report })
    );
    commands.addCommand(CommandIDs.openLabelIssues, {
      label: 'Show Fine-tuning Run Label Issues',
      caption: 'The training examples likeliest mislabelled, from the confidence the run recorded while training',
      isEnabled: args => !!target(args as IRunArgs),
      execute: args => {
        const t = target(args as IRunArgs);
        if (t) {
          const issues = new LabelIssues(api, t.runId, `${t.name} · label issues`);
          const render = (report: ILabelIssueReport) =>
            React.createElement(LabelIssuesView, {
              report,
              label: issues.label,
              onLabel: label => void issues.setLabel(label),
              onRefresh: () => void issues.refresh()
            });
          // loaded again once per epoch while the run trains: the records grow by a pass over train
          openView(`label issues:${t.runId}`, issues.remote, render, [t.runId], epochKey);
        }
      }
    });

    for (const command of Object.values(CommandIDs)) {
      palette?.addItem({ command, category: CATEGORY });
    }
    model.changed.connect(() => commands.notifyCommandChanged());
  }
};

export default plugin;
