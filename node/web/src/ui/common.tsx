// Small pieces every view uses: loading with live refresh, actions with a busy state and a
// clear Japanese message, and the message boxes.
import type { ComponentChildren } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { describe, isSessionEnded, isUnreachable } from "../api/errors";
import { idempotencyKey } from "../api/ids";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Clients, Hub } from "../api/hub";
import type { Event } from "../gen/kizuna/events/v1/event_service_pb";
import { useApp } from "./app-context";

export interface Loaded<T> {
  data: T | undefined;
  error: string | null;
  /** Whether the hub answered that the thing is not there (or not the caller's to see). */
  notFound: boolean;
  loading: boolean;
  reload: () => void;
}

/**
 * Loads `fetch` (retried on another node when one does not answer) and again whenever a live
 * event passes `affects` (and after the live stream reconnects).
 */
export function useLoad<T>(
  fetch: (c: Clients) => Promise<T>,
  deps: unknown[],
  affects: (e: Event) => boolean = () => false,
): Loaded<T> {
  const { hub, live, signOut } = useApp();
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  const [notFound, setNotFound] = useState(false);
  const [loading, setLoading] = useState(true);
  const generation = useRef(0);
  const reload = useCallback(() => {
    const mine = ++generation.current;
    setLoading(true);
    hub
      .call(fetch)
      .then((d) => mine === generation.current && (setData(d), setError(null), setNotFound(false)))
      .catch((e) => {
        if (isSessionEnded(e)) return signOut(describe(e, "読み込み"));
        if (mine === generation.current) (setError(describe(e, "読み込み")), setNotFound(ConnectError.from(e).code === Code.NotFound));
      })
      .finally(() => mine === generation.current && setLoading(false));
  }, deps);
  // What was shown stays while it reloads (a view of another room or request is keyed afresh).
  useEffect(reload, [reload]);
  useEffect(() => live.listen((e) => (e === "resync" || affects(e)) && reload()), [reload]);
  return { data, error, notFound, loading, reload };
}

/** `value`, once it has stopped changing for `ms` (a filter typed letter by letter). */
export function useDebounced<T>(value: T, ms = 300): T {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const timer = setTimeout(() => setSettled(value), ms);
    return () => clearTimeout(timer);
  }, [value]);
  return settled;
}

/**
 * An action (a write): `run` calls it, `busy` while it runs, `error` when it failed. A run has
 * one idempotency key (`key`), the same on every node it is tried on, and the next run on the
 * same target keeps it when no node answered this one: a write that reached a node before it stopped answering is
 * applied once, however often the user tries again. After an answer (done or refused) the next
 * run is a new write.
 */
export function useAction<A extends unknown[], R>(
  what: string,
  act: (c: Clients, key: string, ...args: A) => Promise<R>,
): Action<A, R> {
  const { hub, signOut } = useApp();
  return useActionOn(hub, signOut, what, act);
}

export interface Action<A extends unknown[], R> {
  run: (...args: A) => Promise<R | undefined>;
  busy: boolean;
  error: string | null;
  clear: () => void;
}

/** [`useAction`] on a hub connection outside the signed-in pages (the issued-password page). */
export function useActionOn<A extends unknown[], R>(
  hub: Hub,
  signOut: (reason?: string) => void,
  what: string,
  act: (c: Clients, key: string, ...args: A) => Promise<R>,
): Action<A, R> {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const pending = useRef<{ target: string; key: string } | null>(null);
  const run = async (...args: A) => {
    setBusy(true);
    setError(null);
    // The same action on the same target (args) only: approving B after approving A went
    // unanswered is another write.
    const target = JSON.stringify(args, (_, v: unknown) => (typeof v === "bigint" ? v.toString() : v));
    if (pending.current?.target !== target) pending.current = { target, key: idempotencyKey() };
    const key = pending.current.key;
    try {
      const answer = await hub.call((c) => act(c, key, ...args));
      pending.current = null;
      return answer;
    } catch (e) {
      if (!isUnreachable(e)) pending.current = null;
      if (isSessionEnded(e)) signOut(describe(e, what));
      else setError(describe(e, what));
      return undefined;
    } finally {
      setBusy(false);
    }
  };
  return { run, busy, error, clear: () => setError(null) };
}

/** The `<option>`s of an enum's Japanese labels, without its unspecified value (0). */
export function EnumOptions({ labels }: { labels: Record<number, string> }) {
  return (
    <>
      {Object.entries(labels)
        .filter(([value]) => value !== "0")
        .map(([value, label]) => (
          <option value={value}>{label}</option>
        ))}
    </>
  );
}

export function ErrorBox({ message }: { message: string | null }) {
  if (!message) return null;
  return (
    <p class="error" role="alert">
      {message}
    </p>
  );
}

export function Notice({ children }: { children: ComponentChildren }) {
  return (
    <p class="notice" role="status">
      {children}
    </p>
  );
}

export function Loading({ loaded }: { loaded: Loaded<unknown> }) {
  if (loaded.error) return <ErrorBox message={loaded.error} />;
  if (loaded.loading && loaded.data === undefined) return <p class="muted">読み込み中…</p>;
  return null;
}

/** A page's title bar with an optional way back. */
export function PageTitle({ title, back, children }: { title: string; back?: string; children?: ComponentChildren }) {
  return (
    <div class="page-title">
      {back && (
        <a class="back" href={back} aria-label="戻る">
          ‹
        </a>
      )}
      <h1>{title}</h1>
      {children}
    </div>
  );
}
