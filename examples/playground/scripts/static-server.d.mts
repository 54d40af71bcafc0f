export interface StaticServer {
  url: string;
  /** Paths requested so far, in order. */
  requests: string[];
  close(): Promise<void>;
}
export function startStaticServer(options: { root: string; port?: number }): Promise<StaticServer>;
