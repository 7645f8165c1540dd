// Stock y-websocket clients for tests (disableBc: clients in one process must not sync through
// BroadcastChannel, or a test could pass without the server), and a polling wait.
import { WebsocketProvider } from "y-websocket";
import * as Y from "yjs";

export interface RoomClient {
  doc: Y.Doc;
  provider: WebsocketProvider;
  /** Resolves once the first sync with the server completed. */
  synced: Promise<void>;
  /** Resolves with the first close the server sent. */
  closed: Promise<{ code: number; reason: string }>;
  /** The Y.Text "content" (a file room's text). */
  text: Y.Text;
}

export function connectRoom(baseUrl: string, room: string, token: string | undefined): RoomClient {
  const doc = new Y.Doc();
  const provider = new WebsocketProvider(`${baseUrl.replace(/^http/, "ws")}/collab`, room, doc, {
    params: token ? { token } : {},
    WebSocketPolyfill: WebSocket as never,
    disableBc: true,
  });
  const synced = new Promise<void>((resolve) => {
    if (provider.synced) resolve();
    else provider.on("sync", (isSynced: boolean) => isSynced && resolve());
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    provider.on("connection-close", (event: CloseEvent | null) => {
      if (event) resolve({ code: event.code, reason: event.reason });
    }),
  );
  return { doc, provider, synced, closed, text: doc.getText("content") };
}

export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await Bun.sleep(20);
  }
}
