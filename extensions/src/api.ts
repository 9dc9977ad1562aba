// Requests to the server extension (r1v4_nb/ui/labserver.py), with Jupyter's authentication.
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** One row of GET /r1v4/runs (labserver.RunSummary). */
export interface IRunSummary {
  path: string;
  id: string;
  question: string;
  answer: string | null;
  status: string;
  steps: number;
  model: string;
  mode: string;
  time: string;
  modified: number;
  parent: { id: string; step: number | null } | null;
}

/** One poll of GET /r1v4/trajectory?since=K: the cards from K on and the new header. */
export interface ICards {
  count: number;
  since: number;
  cards: string[];
  header: string;
  status: string;
  done: boolean;
  size: number;
  mtime: number;
  idle_limit_s: number;
  warnings: string[];
}

/** GET <base>/r1v4/<endpoint>?params; a refusal becomes an Error carrying the server's one-line reason. */
export async function request(
  endpoint: string,
  params: Record<string, string>
): Promise<Response> {
  const settings = ServerConnection.makeSettings();
  const url =
    URLExt.join(settings.baseUrl, 'r1v4', endpoint) +
    URLExt.objectToQueryString(params);
  const response = await ServerConnection.makeRequest(url, {}, settings);
  if (!response.ok) {
    let reason = response.statusText;
    try {
      const body = await response.json();
      reason = body.message || reason;
    } catch {
      // not JSON: keep the status text
    }
    throw new Error(`${response.status}: ${reason}`);
  }
  return response;
}

export async function listRuns(): Promise<IRunSummary[]> {
  return (await request('runs', {})).json();
}

export async function trajectoryPage(path: string): Promise<string> {
  return (await request('trajectory', { path })).text();
}

export async function cardsSince(path: string, since: number): Promise<ICards> {
  return (await request('trajectory', { path, since: String(since) })).json();
}

export async function imageBlob(path: string, sha: string): Promise<Blob> {
  return (await request('image', { path, sha })).blob();
}
