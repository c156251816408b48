// 施設スタッフ, for a facility's admins: approve those who registered with an invitation, stop
// the account of someone who left (every session of it ends at once, on every node).
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
              <button class="link danger" disabled={act.busy} onClick={() => run(s)}>
                利用停止
              </button>
            )}
          </li>
        ))}
      </ul>
      <ErrorBox message={act.error} />
      <Invite facilityId={facilityId} />
    </div>
  );
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
