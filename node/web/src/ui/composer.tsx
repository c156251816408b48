// Writing a post. What the user typed is kept (in this browser) until the hub has the post: a
// failed send, a reload or a lost connection never loses it. One idempotency key per text: a
// send retried unchanged (after a timeout, a reload) is posted once; a changed text is a new
// write (the hub answers a reused key with the first write's result, e.g. its refusal).
import { useEffect, useState } from "preact/hooks";
import { idempotencyKey } from "../api/ids";
import { useApp } from "./app-context";
import { ErrorBox, useAction } from "./common";

interface Draft {
  text: string;
  key: string;
}

/** Drafts are the account's: another person signing in on this browser never sees them. */
function draftKey(account: bigint, roomId: bigint): string {
  return `kizuna.draft.${account}.${roomId}`;
}

/** Logging out on purpose drops the account's unsent drafts (a shared clinic PC). */
export function forgetDrafts(account: bigint): void {
  const prefix = `kizuna.draft.${account}.`;
  const keys = Array.from({ length: localStorage.length }, (_, i) => localStorage.key(i) ?? "");
  for (const key of keys.filter((k) => k.startsWith(prefix))) localStorage.removeItem(key);
}

function loadDraft(account: bigint, roomId: bigint): Draft {
  try {
    const saved = JSON.parse(localStorage.getItem(draftKey(account, roomId)) ?? "null") as Draft | null;
    if (saved && typeof saved.text === "string" && typeof saved.key === "string") return saved;
  } catch {
    // A damaged draft is replaced by an empty one.
  }
  return { text: "", key: idempotencyKey() };
}

export function Composer({ roomId, onPosted }: { roomId: bigint; onPosted: () => void }) {
  const { me } = useApp();
  const key = draftKey(me.accountId, roomId);
  const [draft, setDraft] = useState<Draft>(() => loadDraft(me.accountId, roomId));
  const [empty, setEmpty] = useState(false);
  const send = useAction("投稿", (c, _key, d: Draft) => c.posts.createPost({ idempotencyKey: d.key, roomId, text: d.text }));
  useEffect(() => setDraft(loadDraft(me.accountId, roomId)), [key]);
  const edit = (text: string) => {
    const next = { text, key: idempotencyKey() };
    setDraft(next);
    setEmpty(false);
    localStorage.setItem(key, JSON.stringify(next));
  };
  const submit = async (e: Event) => {
    e.preventDefault();
    if (draft.text.trim().length === 0) {
      setEmpty(true);
      return;
    }
    const posted = await send.run(draft);
    if (!posted) return;
    localStorage.removeItem(key);
    setDraft({ text: "", key: idempotencyKey() });
    onPosted();
  };
  return (
    <form class="composer" onSubmit={submit} aria-label="投稿する">
      <label for="composer-text" class="sr-only">
        投稿内容
      </label>
      <textarea id="composer-text" rows={3} placeholder="投稿内容を入力" value={draft.text} onInput={(e) => edit(e.currentTarget.value)} />
      <ErrorBox message={empty ? "本文を入力してください。" : null} />
      <ErrorBox message={send.error && `${send.error} 入力した内容は残っています。`} />
      <button type="submit" class="primary" disabled={send.busy}>
        {send.busy ? "送信中…" : "投稿"}
      </button>
    </form>
  );
}
