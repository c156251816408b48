// 緊急アクセス (break-glass, docs/security.md): a timeline the caller is not on the team of.
// An account an operator designated may open it read-only for four hours by stating why; the
// hub audits the opening and every read, and the operators are alerted. For anyone else the
// hub refuses, and the page says so.
import { useState } from "preact/hooks";
import { ErrorBox, useAction } from "./common";

/** Why the reason must be real: the hub asks for 10 to 500 characters. */
const MIN_REASON_CHARS = 10;

export function EmergencyAccessForm({ roomId, onOpened }: { roomId: bigint; onOpened: () => void }) {
  const [reason, setReason] = useState("");
  const open = useAction("緊急アクセス", (c, key) => c.rooms.openEmergencyAccess({ idempotencyKey: key, roomId, reason: reason.trim() }));
  const submit = async (e: Event) => {
    e.preventDefault();
    if (await open.run()) onOpened();
  };
  return (
    <form class="card" onSubmit={submit} aria-label="緊急アクセス">
      <h2>緊急アクセス</h2>
      <p>
        このタイムラインのチームに入っていません。事務局が緊急アクセスを許可したアカウントは、理由を記録して4時間だけ閲覧できます（書き込みはできません）。開いたこと・読んだ内容はすべて監査ログに残り、事務局に通知されます。
      </p>
      <label>
        理由（{MIN_REASON_CHARS}文字以上）
        <textarea required minLength={MIN_REASON_CHARS} maxLength={500} value={reason} onInput={(e) => setReason(e.currentTarget.value)} />
      </label>
      <ErrorBox message={open.error} />
      <button class="danger" disabled={open.busy}>
        緊急アクセスを開く
      </button>
    </form>
  );
}

/** Says, above a timeline read under emergency access, that it is one and that it is recorded. */
export function EmergencyBanner() {
  return (
    <div class="banner offline" role="alert">
      緊急アクセス中：このタイムラインを閲覧した記録が監査ログに残ります。書き込みはできません。
    </div>
  );
}

