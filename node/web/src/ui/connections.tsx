// Connection requests (つながり申請): accept or decline those to me; see those I sent.
import type { ConnectionRequest } from "../gen/kizuna/connections/v1/connection_service_pb";
import { ErrorBox, useAction, useLoad } from "./common";
import { profession } from "./labels";
import { go } from "./route";

export function ConnectionRequests() {
  const requests = useLoad((c) => c.connections.listConnectionRequests({}), [], (e) => e.kind.case === "connectionsChanged");
  const answer = useAction("つながり申請への回答", async (c, key, who: bigint, accept: boolean) => {
    if (!accept) {
      await c.connections.declineConnection({ idempotencyKey: key, accountId: who });
      return undefined;
    }
    return (await c.connections.acceptConnection({ idempotencyKey: key, accountId: who })).roomId;
  });
  const data = requests.data;
  if (!data || (data.incoming.length === 0 && data.outgoing.length === 0)) return <ErrorBox message={requests.error} />;
  const decide = async (who: bigint, accept: boolean) => {
    const room = await answer.run(who, accept);
    if (room !== undefined) go("room", room);
    else requests.reload();
  };
  return (
    <div class="card">
      {data.incoming.length > 0 && <h2>つながり申請が届いています</h2>}
      <ul class="plain">
        {data.incoming.map((r) => (
          <li class="row">
            <Person person={r} />
            <button class="primary" disabled={answer.busy} onClick={() => decide(r.accountId, true)}>
              承認
            </button>
            <button class="secondary" disabled={answer.busy} onClick={() => decide(r.accountId, false)}>
              辞退
            </button>
          </li>
        ))}
      </ul>
      {data.outgoing.length > 0 && <h2>申請中（相手の承認待ち）</h2>}
      <ul class="plain">
        {data.outgoing.map((r) => (
          <li class="row">
            <Person person={r} />
          </li>
        ))}
      </ul>
      <ErrorBox message={answer.error} />
    </div>
  );
}

function Person({ person }: { person: ConnectionRequest }) {
  return (
    <span class="grow">
      {person.displayName}
      <span class="muted">
        {" "}
        {profession(person.profession)} {person.facility}
        {person.hub && `（${person.hub}）`}
      </span>
    </span>
  );
}
