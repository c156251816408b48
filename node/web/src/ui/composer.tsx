// Writing a post. What the user typed is kept (in this browser) until the hub has the post: a
// failed send, a reload or a lost connection never loses it. One idempotency key per text: a
// send retried unchanged (after a timeout, a reload) is posted once; a changed text is a new
// write (the hub answers a reused key with the first write's result, e.g. its refusal), and so
// is the same text with other attachments. Attached files are the page's only (ui/uploads.tsx).
import { useEffect, useRef, useState } from "preact/hooks";
import { idempotencyKey } from "../api/ids";
import { useApp } from "./app-context";
import { ErrorBox, useAction } from "./common";
import { FilePicker, readyAttachments, UploadList, useUploads } from "./uploads";

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
  const [problem, setProblem] = useState<string | null>(null);
  const files = useUploads();
  const send = useAction("投稿", (c, _key, d: Draft, attachmentIds: bigint[]) =>
    c.posts.createPost({ idempotencyKey: d.key, roomId, text: d.text, attachmentIds }),
  );
  useEffect(() => {
    setDraft(loadDraft(me.accountId, roomId));
    // Files chosen in another room are not this room's.
    files.clear();
  }, [key]);
  const save = (next: Draft) => {
    setDraft(next);
    setProblem(null);
    localStorage.setItem(key, JSON.stringify(next));
  };
  const edit = (text: string) => save({ text, key: idempotencyKey() });
  const finished = files.uploads.flatMap((u) => (u.attachment ? [String(u.attachment.id)] : [])).join(",");
  useNewKeyWhenAttachmentsChange(finished, () => {
    const next = { text: draft.text, key: idempotencyKey() };
    setDraft(next);
    // An empty draft is not kept (after a post, the files going must not bring one back).
    if (next.text) localStorage.setItem(key, JSON.stringify(next));
  });
  const submit = async (e: Event) => {
    e.preventDefault();
    const attachmentIds = readyAttachments(files.uploads);
    const blocked = whyNotYet(draft.text, files.uploads.length, attachmentIds);
    if (blocked) return setProblem(blocked);
    const posted = await send.run(draft, attachmentIds ?? []);
    if (!posted) return;
    localStorage.removeItem(key);
    setDraft({ text: "", key: idempotencyKey() });
    files.clear();
    onPosted();
  };
  return (
    <form class="composer" onSubmit={submit} aria-label="投稿する">
      <label for="composer-text" class="sr-only">
        投稿内容
      </label>
      <textarea id="composer-text" rows={3} placeholder="投稿内容を入力" value={draft.text} onInput={(e) => edit(e.currentTarget.value)} />
      <FilePicker onChoose={(chosen) => (setProblem(null), files.add(chosen))} />
      <UploadList uploads={files.uploads} onRetry={files.retry} onRemove={(u) => (setProblem(null), files.remove(u))} />
      <ErrorBox message={problem} />
      <ErrorBox message={send.error && `${send.error} 入力した内容は残っています。`} />
      <button type="submit" class="primary" disabled={send.busy}>
        {send.busy ? "送信中…" : "投稿"}
      </button>
    </form>
  );
}

/** Why the post cannot be sent yet; null when it can. */
function whyNotYet(text: string, files: number, ready: bigint[] | undefined): string | null {
  if (files > 0 && !ready) return "添付ファイルのアップロードが終わってから投稿してください。添付できなかったファイルは取り除いてください。";
  if (text.trim().length === 0 && files === 0) return "本文を入力してください。";
  return null;
}

/** Calls `renew` when the set of finished attachments (`ids`) changes, not on the first showing. */
function useNewKeyWhenAttachmentsChange(ids: string, renew: () => void) {
  const seen = useRef(ids);
  useEffect(() => {
    if (seen.current === ids) return;
    seen.current = ids;
    renew();
  }, [ids]);
}
