// 施設スタッフ, for a facility's admins: approve those who registered with an invitation, stop
// the account of someone who left (every session of it ends at once, on every node), and issue
// a new password to someone who forgot theirs (they change it at their next sign-in).
import { useState } from "preact/hooks";
import { AccountState, type StaffAccount } from "../gen/kizuna/accounts/v1/account_service_pb";
import { useApp } from "./app-context";
import { ErrorBox, Loading, useAction, useLoad } from "./common";
import { profession, when } from "./labels";

/** How long an invitation code works: three days, for a colleague to find time to register. */
const INVITATION_HOURS = 72;

const STATES: Record<AccountState, string> = {
  [AccountState.UNSPECIFIED]: "",
  [AccountState.PENDING]: "承認待ち",
  [AccountState.ACTIVE]: "利用中",
  [AccountState.STOPPED]: "利用停止",
};

export function Staff({ facilityId }: { facilityId: bigint }) {
  const { me } = useApp();
  const staff = useLoad((c) => c.accounts.listStaff({ facilityId }), [facilityId]);
  const act = useAction("スタッフの操作", async (c, key, who: StaffAccount) => {
    const request = { idempotencyKey: key, accountId: who.accountId };
    if (who.state === AccountState.PENDING) await c.accounts.approveAccount(request);
    else await c.accounts.stopAccount(request);
    return true;
  });
  const [issued, setIssued] = useState<{ name: string; password: string } | null>(null);
  const reissue = useAction("パスワードの発行", async (c, key, who: StaffAccount, password: string) => {
    await c.accounts.issuePassword({ idempotencyKey: key, accountId: who.accountId, password });
    return true;
  });
  const issuePassword = async (who: StaffAccount) => {
    if (!confirm(`${who.displayName} さんに新しいパスワードを発行しますか？今のパスワードは使えなくなり、すべての端末でログアウトされます。`)) return;
    const password = randomPassword();
    if (await reissue.run(who, password)) setIssued({ name: who.displayName, password });
  };
  const run = async (who: StaffAccount) => {
    const stopping = who.state === AccountState.ACTIVE;
    if (stopping && !confirm(`${who.displayName} さんのアカウントを利用停止にしますか？すべての端末でログアウトされます。`)) return;
    if (await act.run(who)) staff.reload();
  };
  return (
    <div class="card" aria-label="施設スタッフ">
      <h2>施設スタッフ（{me.facilityName}）</h2>
      <Loading loaded={staff} />
      <ul class="plain">
        {staff.data?.staff.map((s) => (
          <li class="row">
            <span class="grow">
              {s.displayName} <span class="muted">{profession(s.profession)} {s.login}</span>
              <span class="tag">{STATES[s.state]}</span>
              {s.facilityAdmin && <span class="tag">管理者</span>}
            </span>
            {s.state === AccountState.PENDING && (
              <button class="primary small" disabled={act.busy} onClick={() => run(s)}>
                承認
              </button>
            )}
            {s.state === AccountState.ACTIVE && s.accountId !== me.accountId && (
              <>
                <button class="link" disabled={reissue.busy} onClick={() => issuePassword(s)}>
                  パスワードを発行
                </button>
                <button class="link danger" disabled={act.busy} onClick={() => run(s)}>
                  利用停止
                </button>
              </>
            )}
          </li>
        ))}
      </ul>
      {issued && (
        <p class="notice" role="status">
          {issued.name} さんの新しいパスワード <code data-testid="issued-password">{issued.password}</code>
          。ご本人に直接渡してください。次のログインで本人が変更するまで、ほかの操作はできません。このパスワードは一度しか表示されません。
        </p>
      )}
      <ErrorBox message={act.error ?? reissue.error} />
      <Invite facilityId={facilityId} />
    </div>
  );
}

/**
 * A password to hand over: four groups of five from an alphabet without look-alikes, joined by
 * hyphens (about 100 bits, all four kinds of characters, so any rule a hub sets accepts it),
 * drawn by the browser's cryptographic generator, as `kizuna admin issue-password` does.
 */
function randomPassword(): string {
  const alphabet = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
  for (;;) {
    // 220 = 4 × 55: bytes below it map onto the alphabet without bias.
    const bytes = crypto.getRandomValues(new Uint8Array(64)).filter((b) => b < 220);
    if (bytes.length < 20) continue;
    const chars = Array.from(bytes.slice(0, 20), (b) => alphabet[b % alphabet.length]);
    const password = [0, 5, 10, 15].map((i) => chars.slice(i, i + 5).join("")).join("-");
    if (/[a-z]/.test(password) && /[A-Z]/.test(password) && /[0-9]/.test(password)) return password;
  }
}

/** 招待コードの発行: the code is shown once, to hand to the new colleague. */
function Invite({ facilityId }: { facilityId: bigint }) {
  const [asAdmin, setAsAdmin] = useState(false);
  const [issued, setIssued] = useState<{ code: string; until: string } | null>(null);
  const issue = useAction("招待コードの発行", (c, key) => c.accounts.issueInvitation({ idempotencyKey: key, facilityId, validHours: INVITATION_HOURS, asAdmin }));
  const submit = async (e: Event) => {
    e.preventDefault();
    const answer = await issue.run();
    if (answer) setIssued({ code: answer.code, until: when(answer.expiresAt) });
  };
  return (
    <form onSubmit={submit} aria-label="スタッフを招待">
      <h3>スタッフを招待</h3>
      <label class="check">
        <input type="checkbox" checked={asAdmin} onChange={(e) => setAsAdmin(e.currentTarget.checked)} />
        管理者として招待
      </label>
      <button class="secondary small" disabled={issue.busy}>
        招待コードを発行
      </button>
      {issued && (
        <p class="notice" role="status">
          招待コード <code data-testid="invitation-code">{issued.code}</code>（{issued.until} まで有効）。ログイン画面の「新規登録」で使います。このコードは一度しか表示されません。
        </p>
      )}
      <ErrorBox message={issue.error} />
    </form>
  );
}
