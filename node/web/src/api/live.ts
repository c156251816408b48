// The tab's one live event stream. It resumes after the last event's cursor on whichever node
// answers (nothing missed, nothing repeated), and tells the views when they may have missed
// something (the first connection, or a reconnection before any event had a cursor).
import type { Event } from "../gen/kizuna/events/v1/event_service_pb";
import { Code, ConnectError } from "@connectrpc/connect";
import { isSessionEnded, isUnreachable } from "./errors";
import type { Hub } from "./hub";

export type LiveListener = (event: Event | "resync") => void;

const RETRY_MS = [500, 1000, 2000, 4000];
const RESYNC_AFTER_MS = 1500;

export class Live {
  private cursor: bigint | undefined;
  private listeners = new Set<LiveListener>();
  private abort: AbortController | null = null;
  private stopped = false;

  constructor(
    private hub: Hub,
    private onSessionEnded: () => void,
  ) {}

  /** Once per instance: a second start would run a second stream. */
  start(): void {
    if (this.unfollow) return;
    this.stopped = false;
    void this.run();
    // The page moved to another node (failover): follow it.
    this.unfollow = this.hub.subscribe((s) => {
      if (this.connectedTo && s.url !== this.connectedTo) this.abort?.abort();
    });
  }

  stop(): void {
    this.stopped = true;
    this.abort?.abort();
    this.unfollow?.();
    this.unfollow = null;
  }

  listen(l: LiveListener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  private connectedTo: string | null = null;
  private unfollow: (() => void) | null = null;

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      try {
        await this.follow(() => (failures = 0));
      } catch (e) {
        if (this.stopped) return;
        if (isSessionEnded(e)) {
          this.onSessionEnded();
          return;
        }
        if (isCursorForgotten(e)) {
          // Away longer than the hub keeps events: start again from now; views reload.
          this.cursor = undefined;
          continue;
        }
        if (isUnreachable(e) && !this.abort?.signal.aborted) this.hub.rotate();
        failures += 1;
      }
      await sleep(RETRY_MS[Math.min(failures, RETRY_MS.length - 1)]);
    }
  }

  /** One subscription on the current node, until it ends; `onEvent` after each event. */
  private async follow(onEvent: () => void): Promise<void> {
    this.abort = new AbortController();
    this.connectedTo = this.hub.state.url;
    const stream = this.hub.current().events.subscribe({ afterCursor: this.cursor }, { signal: this.abort.signal, timeoutMs: 0 });
    // Without a cursor the stream starts at "now", once the node has the request: views
    // reload when it surely has (RESYNC_AFTER_MS), so nothing between their first load and the
    // stream's start is missed. With a cursor the node replays what came after it.
    const resync = this.cursor === undefined ? setTimeout(() => this.emit("resync"), RESYNC_AFTER_MS) : undefined;
    try {
      for await (const response of stream) {
        onEvent();
        if (!response.event) continue;
        this.cursor = response.event.cursor;
        this.emit(response.event);
      }
    } finally {
      clearTimeout(resync);
    }
  }

  private emit(e: Event | "resync"): void {
    for (const l of this.listeners) l(e);
  }
}

/** The hub no longer keeps the events after this tab's cursor (OUT_OF_RANGE). */
function isCursorForgotten(e: unknown): boolean {
  return e instanceof ConnectError && e.code === Code.OutOfRange;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
