// Files attached in the composer: each is uploaded as soon as it is chosen (api/upload.ts),
// with its progress, its refusal in Japanese, a retry when no node answered, and a way to take
// it off before posting. Files live in this page's memory only: a reload drops them (an upload
// no post took is removed by the hub after its grace period).
import { useEffect, useRef, useState } from "preact/hooks";
import { describe, describeUpload, isSessionEnded, isUnreachable } from "../api/errors";
import { idempotencyKey } from "../api/ids";
import { uploadFile } from "../api/upload";
import type { Attachment } from "../gen/kizuna/common/v1/types_pb";
import { useApp } from "./app-context";
import { ErrorBox } from "./common";
import { fileSize } from "./labels";

export interface Upload {
  id: number;
  file: File;
  /** The file's idempotency key, kept by a retry. */
  key: string;
  received: number;
  attachment?: Attachment;
  error?: string;
  /** No node answered: the same upload may be tried again. A refusal is final. */
  retryable: boolean;
  controller: AbortController;
}

/** What the picker offers (the hub decides from the bytes; this only narrows the chooser). */
const ACCEPT = "image/*,video/*,application/pdf,.doc,.docx,.xls,.xlsx,.ppt,.pptx";

let nextId = 1;

export function useUploads() {
  const { hub, signOut } = useApp();
  const [uploads, setUploads] = useState<Upload[]>([]);
  const live = useRef<Upload[]>([]);
  live.current = uploads;
  const change = (id: number, patch: Partial<Upload>) => setUploads((list) => list.map((u) => (u.id === id ? { ...u, ...patch } : u)));
  const start = (u: Upload) => {
    const onProgress = (received: number) => change(u.id, { received });
    uploadFile(hub, u.file, { key: u.key, signal: u.controller.signal, onProgress })
      .then((attachment) => change(u.id, { attachment, received: u.file.size }))
      .catch((e: unknown) => {
        if (u.controller.signal.aborted) return;
        if (isSessionEnded(e)) signOut(describe(e, "添付"));
        else change(u.id, { error: describeUpload(e), retryable: isUnreachable(e) });
      });
  };
  const add = (files: File[]) => {
    const fresh = files.map((file) => ({ id: nextId++, file, key: idempotencyKey(), received: 0, retryable: false, controller: new AbortController() }));
    setUploads((list) => [...list, ...fresh]);
    fresh.forEach(start);
  };
  const retry = (u: Upload) => {
    const again = { ...u, error: undefined, retryable: false, received: 0, controller: new AbortController() };
    setUploads((list) => list.map((x) => (x.id === u.id ? again : x)));
    start(again);
  };
  const remove = (u: Upload) => {
    u.controller.abort();
    setUploads((list) => list.filter((x) => x.id !== u.id));
  };
  const clear = () => {
    live.current.forEach((u) => u.controller.abort());
    setUploads([]);
  };
  // Leaving the page stops what is still uploading.
  useEffect(() => () => live.current.forEach((u) => u.controller.abort()), []);
  return { uploads, add, retry, remove, clear };
}

/** The 「ファイルを添付」 button: a real file input (keyboard and screen readers), styled. */
export function FilePicker({ onChoose }: { onChoose: (files: File[]) => void }) {
  const choose = (input: HTMLInputElement) => {
    const files = Array.from(input.files ?? []);
    // The same file chosen again is a new attachment: the input forgets its choice.
    input.value = "";
    if (files.length > 0) onChoose(files);
  };
  return (
    <div class="file-picker">
      <input id="composer-files" class="file-input" type="file" multiple accept={ACCEPT} aria-describedby="composer-files-kinds" onChange={(e) => choose(e.currentTarget)} />
      <label for="composer-files" class="file-button">
        ファイルを添付
      </label>
      <span id="composer-files-kinds" class="muted">
        写真・動画・PDF・Office文書
      </span>
    </div>
  );
}

export function UploadList({ uploads, onRetry, onRemove }: { uploads: Upload[]; onRetry: (u: Upload) => void; onRemove: (u: Upload) => void }) {
  if (uploads.length === 0) return null;
  return (
    <ul class="uploads" aria-label="添付ファイル">
      {uploads.map((u) => (
        <li class="upload" key={u.id}>
          <span class="upload-name">{u.file.name}</span>
          <span class="muted">{fileSize(u.file.size)}</span>
          <UploadState upload={u} />
          {u.retryable && (
            <button type="button" class="link" onClick={() => onRetry(u)}>
              再試行
            </button>
          )}
          <button type="button" class="link danger" aria-label={`${u.file.name} を取り除く`} onClick={() => onRemove(u)}>
            取り除く
          </button>
          <ErrorBox message={u.error ?? null} />
        </li>
      ))}
    </ul>
  );
}

function UploadState({ upload }: { upload: Upload }) {
  if (upload.error) return null;
  if (upload.attachment) return <span class="upload-done">添付済み</span>;
  const percent = Math.floor((upload.received / Math.max(1, upload.file.size)) * 100);
  return (
    <span class="upload-progress" role="status">
      <progress max={100} value={percent} aria-label={`${upload.file.name} のアップロード`} />
      アップロード中 {percent}%
    </span>
  );
}

/** The attachments ready to post; undefined while any is still uploading or was refused. */
export function readyAttachments(uploads: Upload[]): bigint[] | undefined {
  if (uploads.some((u) => !u.attachment)) return undefined;
  return uploads.flatMap((u) => (u.attachment ? [u.attachment.id] : []));
}
