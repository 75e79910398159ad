/**
 * The real `IRunsApi`: requests to the ftkit server extension through JupyterLab's
 * `ServerConnection`, which adds the token and XSRF headers every route requires.
 */

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import {
  IComparison,
  IErrorReport,
  IExport,
  IExportRequest,
  ILabelIssueReport,
  IListQuery,
  IRunConfig,
  IRunLog,
  IRunDetail,
  IRunsApi,
  IRunsPage,
  ISweepSummary,
  RunsApiError,
  listParams
} from './api';

export class ServerRunsApi implements IRunsApi {
  constructor(
    private readonly settings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {}

  list(query: IListQuery): Promise<IRunsPage> {
    return this.request(`runs?${listParams(query)}`);
  }

  live(
    query: IListQuery,
    etag: string,
    timeoutSeconds: number,
    signal?: AbortSignal
  ): Promise<IRunsPage> {
    const params = listParams(query);
    params.set('etag', etag);
    params.set('timeout', String(timeoutSeconds));
    return this.request(`live?${params}`, { signal });
  }

  detail(runId: string): Promise<IRunDetail> {
    return this.request(`runs/${encodeURIComponent(runId)}`);
  }

  config(runId: string): Promise<IRunConfig> {
    return this.request(`runs/${encodeURIComponent(runId)}/config`);
  }

  log(runId: string, lines: number): Promise<IRunLog> {
    return this.request(`runs/${encodeURIComponent(runId)}/log?lines=${lines}`);
  }

  compare(runIds: string[]): Promise<IComparison> {
    return this.request(`compare?${new URLSearchParams({ ids: runIds.join(',') })}`);
  }

  errors(runId: string, split: string): Promise<IErrorReport> {
    return this.request(`runs/${encodeURIComponent(runId)}/errors?${new URLSearchParams({ split, limit: '200' })}`);
  }

  labelIssues(runId: string, label: string | null, limit: number): Promise<ILabelIssueReport> {
    const params = new URLSearchParams({ limit: String(limit) });
    if (label) {
      params.set('label', label);
    }
    return this.request(`runs/${encodeURIComponent(runId)}/label-issues?${params}`);
  }

  async stop(runId: string): Promise<void> {
    await this.request(`runs/${encodeURIComponent(runId)}/stop`, { method: 'POST' });
  }

  async deleteRun(runId: string): Promise<void> {
    await this.request(`runs/${encodeURIComponent(runId)}`, { method: 'DELETE' });
  }

  async deleteCheckpoint(runId: string, step: number): Promise<void> {
    await this.request(`runs/${encodeURIComponent(runId)}/checkpoints/${step}`, {
      method: 'DELETE'
    });
  }

  async startExport(runId: string, request: IExportRequest): Promise<IExport> {
    const reply = await this.request<{ export: IExport }>(`runs/${encodeURIComponent(runId)}/exports`, {
      method: 'POST',
      body: JSON.stringify(request)
    });
    return reply.export;
  }

  async stopExport(runId: string, exportId: string): Promise<void> {
    await this.request(`runs/${encodeURIComponent(runId)}/exports/${encodeURIComponent(exportId)}`, {
      method: 'DELETE'
    });
  }

  async sweeps(): Promise<ISweepSummary[]> {
    return (await this.request<{ sweeps: ISweepSummary[] }>('sweeps')).sweeps;
  }

  sweep(name: string): Promise<ISweepSummary> {
    return this.request(`sweeps/${encodeURIComponent(name)}`);
  }

  stopSweep(name: string): Promise<ISweepSummary> {
    return this.request(`sweeps/${encodeURIComponent(name)}/stop`, { method: 'POST' });
  }

  private async request<T>(endpoint: string, init: RequestInit = {}): Promise<T> {
    const url = URLExt.join(this.settings.baseUrl, 'ftkit', 'api', endpoint);
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(url, init, this.settings);
    } catch (error) {
      throw new ServerConnection.NetworkError(error as TypeError);
    }
    const body = await response.text();
    const data = body ? JSON.parse(body) : null;
    if (!response.ok) {
      throw new RunsApiError(
        response.status,
        data?.code ?? 'http_error',
        data?.message ?? `the server answered ${response.status}`
      );
    }
    return data as T;
  }
}
