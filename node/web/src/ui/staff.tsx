// 施設スタッフ, for a facility's admins: approve those who registered with an invitation, stop
// the account of someone who left (every session of it ends at once, on every node).
import { AccountState, type StaffAccount } from "../gen/kizuna/accounts/v1/account_service_pb";
import { useApp } from "./app-context";
import { ErrorBox, Loading, useAction, useLoad } from "./common";
import { profession } from "./labels";

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
    </div>
  );
}
