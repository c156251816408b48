// The page's connection to its hub: every node of the hub serves the same API (the session is
// replicated), so when the node the page talks to stops answering, the page carries on against
// another one. Reads and writes alike are retried there: writes carry idempotency keys, so a
// retried write is applied once.
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { AttachmentService } from "../gen/kizuna/attachments/v1/attachment_service_pb";
import { AccountService } from "../gen/kizuna/accounts/v1/account_service_pb";
import { CareRequestService } from "../gen/kizuna/care_requests/v1/care_request_service_pb";
import { ConnectionService } from "../gen/kizuna/connections/v1/connection_service_pb";
import { DisasterService } from "../gen/kizuna/disaster/v1/disaster_service_pb";
import { DirectoryService } from "../gen/kizuna/directory/v1/directory_service_pb";
import { EventService } from "../gen/kizuna/events/v1/event_service_pb";
import { HubService } from "../gen/kizuna/hub/v1/hub_service_pb";
import { PostService } from "../gen/kizuna/posts/v1/post_service_pb";
import { RoomService } from "../gen/kizuna/rooms/v1/room_service_pb";
import { SearchService } from "../gen/kizuna/search/v1/search_service_pb";
import { isUnreachable } from "./errors";

/** A call that takes longer is taken as a node that does not answer (a cut-off node can hang). */
const CALL_TIMEOUT_MS = 8000;
/** How long the banner says the page moved to another node. */
const SWITCH_NOTE_MS = 30_000;
const TOKEN_KEY = "kizuna.token";
const ENDPOINTS_KEY = "kizuna.endpoints";

export interface Clients {
  accounts: Client<typeof AccountService>;
  attachments: Client<typeof AttachmentService>;
  rooms: Client<typeof RoomService>;
  posts: Client<typeof PostService>;
  connections: Client<typeof ConnectionService>;
  events: Client<typeof EventService>;
  requests: Client<typeof CareRequestService>;
  directory: Client<typeof DirectoryService>;
  search: Client<typeof SearchService>;
  hub: Client<typeof HubService>;
  disaster: Client<typeof DisasterService>;
}

/** What the banner shows about the connection. */
export interface LinkState {
  /** The node the page talks to now. */
  url: string;
  /** The page moved to `url` after another node stopped answering. */
  switchedFrom?: string;
  /** No node answered the last call. */
  unreachable: boolean;
  /** The node answers but is cut off from its hub: its data may be old. */
  cutOff: boolean;
  /** When the page last had an answer from a node that was not cut off. */
  freshAt: Date;
}

type Listener = (state: LinkState) => void;

export class Hub {
  private endpoints: string[];
  private clients = new Map<string, Clients>();
  private listeners = new Set<Listener>();
  private switchNote: ReturnType<typeof setTimeout> | undefined;
  state: LinkState;
  token: string | null;

  constructor(origin: string) {
    const known = storedEndpoints();
    this.endpoints = [origin, ...known.filter((u) => u !== origin)];
    this.token = localStorage.getItem(TOKEN_KEY);
    this.state = { url: origin, unreachable: false, cutOff: false, freshAt: new Date() };
  }

  /** Calls `fn` on the current node, then on the others while nodes do not answer. */
  async call<T>(fn: (c: Clients) => Promise<T>): Promise<T> {
    const order = [this.state.url, ...this.endpoints.filter((u) => u !== this.state.url)];
    let last: unknown;
    for (const url of order) {
      try {
        const result = await fn(this.clientsFor(url));
        this.answered(url);
        return result;
      } catch (e) {
        if (!isUnreachable(e)) {
          this.answered(url);
          throw e;
        }
        last = e;
      }
    }
    this.update({ unreachable: true });
    throw last;
  }

  /** The clients of the current node (for the live stream, which fails over by itself). */
  current(): Clients {
    return this.clientsFor(this.state.url);
  }

  /** Moves to the next node (the live stream's failover). */
  rotate(): void {
    const i = this.endpoints.indexOf(this.state.url);
    const next = this.endpoints[(i + 1) % this.endpoints.length];
    if (next !== this.state.url) this.update(this.switchTo(next, {}));
  }

  /** `change` moving the page to `url`; the note that it moved goes after a while. */
  private switchTo(url: string, change: Partial<LinkState>): Partial<LinkState> {
    Object.assign(change, { url, switchedFrom: this.state.url });
    clearTimeout(this.switchNote);
    this.switchNote = setTimeout(() => this.update({ switchedFrom: undefined }), SWITCH_NOTE_MS);
    return change;
  }

  /** Learns the hub's nodes and whether the current one is cut off; moves off a cut-off node. */
  async refreshHubInfo(): Promise<void> {
    const info = await this.call((c) => c.hub.getHubInfo({}));
    const urls = info.endpoints.map((e) => e.url).filter((u) => u.length > 0);
    if (urls.length > 0) {
      this.endpoints = [this.state.url, ...urls.filter((u) => u !== this.state.url)];
      localStorage.setItem(ENDPOINTS_KEY, JSON.stringify(urls));
    }
    if (info.cutOff) {
      await this.moveOffCutOffNode();
    } else {
      this.update({ cutOff: false, freshAt: new Date() });
    }
  }

  private async moveOffCutOffNode(): Promise<void> {
    for (const url of this.endpoints.filter((u) => u !== this.state.url)) {
      try {
        const info = await this.clientsFor(url).hub.getHubInfo({});
        if (!info.cutOff) {
          this.update(this.switchTo(url, { cutOff: false, unreachable: false, freshAt: new Date() }));
          return;
        }
      } catch {
        // That node does not answer either: try the next.
      }
    }
    this.update({ cutOff: true });
  }

  setToken(token: string | null): void {
    this.token = token;
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  }

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private answered(url: string): void {
    const change: Partial<LinkState> = { unreachable: false };
    if (url !== this.state.url) this.switchTo(url, change);
    if (!this.state.cutOff) change.freshAt = new Date();
    this.update(change);
  }

  /** A read said its node served its own, possibly old, copy (`stale`). */
  noteStale(stale: boolean): void {
    if (stale !== this.state.cutOff) this.update({ cutOff: stale });
  }

  private update(change: Partial<LinkState>): void {
    this.state = { ...this.state, ...change };
    for (const l of this.listeners) l(this.state);
  }

  private clientsFor(url: string): Clients {
    let clients = this.clients.get(url);
    if (!clients) {
      clients = makeClients(url, this.bearer);
      this.clients.set(url, clients);
    }
    return clients;
  }

  private bearer: Interceptor = (next) => (req) => {
    if (this.token) req.header.set("authorization", `Bearer ${this.token}`);
    return next(req);
  };
}

/** The nodes learnt on an earlier visit; none when nothing (readable) is stored. */
function storedEndpoints(): string[] {
  try {
    const stored: unknown = JSON.parse(localStorage.getItem(ENDPOINTS_KEY) ?? "[]");
    return Array.isArray(stored) ? stored.filter((u): u is string => typeof u === "string") : [];
  } catch {
    return [];
  }
}

function makeClients(baseUrl: string, bearer: Interceptor): Clients {
  const transport = createGrpcWebTransport({
    baseUrl,
    useBinaryFormat: true,
    interceptors: [bearer],
    defaultTimeoutMs: CALL_TIMEOUT_MS,
  });
  return {
    accounts: createClient(AccountService, transport),
    attachments: createClient(AttachmentService, transport),
    rooms: createClient(RoomService, transport),
    posts: createClient(PostService, transport),
    connections: createClient(ConnectionService, transport),
    events: createClient(EventService, transport),
    requests: createClient(CareRequestService, transport),
    directory: createClient(DirectoryService, transport),
    search: createClient(SearchService, transport),
    hub: createClient(HubService, transport),
    disaster: createClient(DisasterService, transport),
  };
}
