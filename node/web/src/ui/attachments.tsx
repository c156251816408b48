// A post's attachments: photos as their small thumbnail (opening the medium one in a viewer),
// other files as a button that downloads the original. Bytes are held in memory only.
import { useEffect, useRef, useState } from "preact/hooks";
import { describe, isSessionEnded } from "../api/errors";
import { dataUrl, downloadBlob, isPhoto, saveAs, smallThumbnail, Variant } from "../api/download";
import type { Attachment } from "../gen/kizuna/common/v1/types_pb";
import { useApp } from "./app-context";
import { ErrorBox } from "./common";
import { fileSize } from "./labels";

export function Attachments({ items }: { items: Attachment[] }) {
  if (items.length === 0) return null;
  const here = items.filter((a) => !notHereNote(a));
  const photos = here.filter(isPhoto);
  const others = here.filter((a) => !isPhoto(a));
  const away = items.filter((a) => notHereNote(a));
  return (
    <div class="attachments">
      {photos.length > 0 && (
        <ul class="photos" aria-label="写真">
          {photos.map((a) => (
            <Photo key={String(a.id)} photo={a} />
          ))}
        </ul>
      )}
      {others.length > 0 && (
        <ul class="files" aria-label="添付ファイル">
          {others.map((a) => (
            <FileLink key={String(a.id)} file={a} />
          ))}
        </ul>
      )}
      {away.length > 0 && (
        <ul class="files" aria-label="他のハブから取得中のファイル">
          {away.map((a) => (
            <li key={String(a.id)} class="muted">
              {a.name} ({fileSize(a.size)}): {notHereNote(a)}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

/** Why a file of another hub's post cannot be opened yet (null: its bytes are here). */
function notHereNote(a: Attachment): string | null {
  if (a.unavailableReason) return `取得できませんでした (${a.unavailableReason})`;
  if (a.arrivingFromHub) return `${a.arrivingFromHub} から届いている途中です。しばらくしてから開き直してください`;
  return null;
}

/** Loads `fetch` once per `id`; a Japanese message when it failed. */
function useBytes<T>(fetch: () => Promise<T>, id: bigint): { value?: T; error: string | null } {
  const { signOut } = useApp();
  const [state, setState] = useState<{ value?: T; error: string | null }>({ error: null });
  useEffect(() => {
    let current = true;
    fetch()
      .then((value) => current && setState({ value, error: null }))
      .catch((e: unknown) => {
        if (isSessionEnded(e)) signOut(describe(e, "表示"));
        else if (current) setState({ error: describe(e, "表示") });
      });
    return () => {
      current = false;
    };
  }, [id]);
  return state;
}

function Photo({ photo }: { photo: Attachment }) {
  const { hub } = useApp();
  const [open, setOpen] = useState(false);
  const small = useBytes(() => smallThumbnail(hub, photo.id), photo.id);
  return (
    <li class="photo">
      <button type="button" class="thumb" title="拡大して表示" onClick={() => setOpen(true)}>
        {small.value ? <img src={small.value} alt={photo.name} /> : <span class="muted">{small.error ? "表示できません" : "読み込み中…"}<span class="sr-only">{photo.name}</span></span>}
      </button>
      {open && <Viewer photo={photo} onClose={() => setOpen(false)} />}
    </li>
  );
}

/** The medium thumbnail in a modal dialog (Escape or 閉じる closes it), with the original to save. */
function Viewer({ photo, onClose }: { photo: Attachment; onClose: () => void }) {
  const { hub } = useApp();
  const dialog = useRef<HTMLDialogElement>(null);
  const medium = useBytes(() => downloadBlob(hub, photo.id, Variant.MEDIUM).then(dataUrl), photo.id);
  useEffect(() => {
    dialog.current?.showModal();
  }, []);
  return (
    <dialog ref={dialog} class="viewer" aria-label={photo.name} onClose={onClose}>
      {medium.value ? <img src={medium.value} alt={photo.name} /> : <p class="muted">{medium.error ? null : "読み込み中…"}</p>}
      <ErrorBox message={medium.error} />
      <div class="row">
        <SaveButton file={photo} label="元のファイルを保存" />
        <button type="button" class="primary" onClick={() => dialog.current?.close()}>
          閉じる
        </button>
      </div>
    </dialog>
  );
}

function FileLink({ file }: { file: Attachment }) {
  return (
    <li>
      <SaveButton file={file} label={`${file.name} (${fileSize(file.size)})`} />
    </li>
  );
}

/** Downloads the original and hands it to the browser's download, named as uploaded. */
function SaveButton({ file, label }: { file: Attachment; label: string }) {
  const { hub, signOut } = useApp();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const save = async () => {
    setBusy(true);
    setError(null);
    try {
      saveAs(await downloadBlob(hub, file.id, Variant.ORIGINAL), file.name);
    } catch (e) {
      if (isSessionEnded(e)) signOut(describe(e, "ダウンロード"));
      else setError(describe(e, "ダウンロード"));
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      <button type="button" class="file" disabled={busy} aria-busy={busy} onClick={save}>
        {label}
        {busy && <span class="muted"> ダウンロード中…</span>}
      </button>
      <ErrorBox message={error} />
    </>
  );
}
