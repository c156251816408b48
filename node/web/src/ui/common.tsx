// Small pieces every view uses: loading with live refresh, actions with a busy state and a
// clear Japanese message, and the message boxes.
import type { ComponentChildren } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { describe, isSessionEnded } from "../api/errors";
import type { Clients } from "../api/hub";
import type { Event } from "../gen/kizuna/events/v1/event_service_pb";
import { useApp } from "./app-context";

export interface Loaded<T> {
  data: T | undefined;
  error: string | null;
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
  const [loading, setLoading] = useState(true);
  const generation = useRef(0);
  const reload = useCallback(() => {
    const mine = ++generation.current;
    setLoading(true);
    hub
      .call(fetch)
      .then((d) => mine === generation.current && (setData(d), setError(null)))
      .catch((e) => {
        if (isSessionEnded(e)) return signOut(describe(e, "読み込み"));
        if (mine === generation.current) setError(describe(e, "読み込み"));
      })
      .finally(() => mine === generation.current && setLoading(false));
  }, deps);
  useEffect(() => {
    setData(undefined);
    reload();
  }, [reload]);
  useEffect(() => live.listen((e) => (e === "resync" || affects(e)) && reload()), [reload]);
  return { data, error, loading, reload };
}

/** An action (a write): `run` calls it, `busy` while it runs, `error` when it failed. */
export function useAction<A extends unknown[], R>(
  what: string,
  act: (c: Clients, ...args: A) => Promise<R>,
): { run: (...args: A) => Promise<R | undefined>; busy: boolean; error: string | null; clear: () => void } {
  const { hub, signOut } = useApp();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const run = async (...args: A) => {
    setBusy(true);
    setError(null);
    try {
      return await hub.call((c) => act(c, ...args));
    } catch (e) {
      if (isSessionEnded(e)) signOut(describe(e, what));
      else setError(describe(e, what));
      return undefined;
    } finally {
      setBusy(false);
    }
  };
  return { run, busy, error, clear: () => setError(null) };
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
