// A room's members: who is in it (and who waits for an owner's approval), inviting a colleague
// (of this hub, or login@hub of a federated one), approving, and a patient's sub-rooms.
import { useState } from "preact/hooks";
import { MemberState, Role, RoomKind, type GetRoomResponse, type RoomMember } from "../gen/kizuna/rooms/v1/room_service_pb";
import { ErrorBox, Notice, useAction } from "./common";
import { role } from "./labels";
import { go } from "./route";

const STATES: Record<number, string> = {
  [MemberState.INVITED]: "招待中（承認待ち）",
  [MemberState.REQUESTED]: "参加申請中（承認待ち）",
};

export function Members({ room, onChanged }: { room: GetRoomResponse; onChanged: () => void }) {
  const owner = room.myRole === Role.OWNER;
  // Declining a waiting invitation or request is removing the member who waits.
  const decide = useAction("承認・辞退", (c, key, who: bigint, approve: boolean) => {
    const request = { idempotencyKey: key, roomId: room.roomId, accountId: who };
    return approve ? c.rooms.approveMember(request).then(() => true) : c.rooms.removeMember(request).then(() => true);
  });
  const answer = async (who: bigint, approve: boolean) => {
    if (await decide.run(who, approve)) onChanged();
  };
  return (
    <div class="card" aria-label="メンバー">
      <h2>メンバー</h2>
      <ul class="plain">
        {room.members.map((m) => (
          <li class="row">
            <MemberLine member={m} />
            {owner && m.state !== MemberState.ACTIVE && (
              <>
                <button class="primary small" disabled={decide.busy} onClick={() => answer(m.accountId, true)}>
                  承認
                </button>
                <button class="secondary small" disabled={decide.busy} onClick={() => answer(m.accountId, false)}>
                  辞退
                </button>
              </>
            )}
          </li>
        ))}
      </ul>
      <ErrorBox message={decide.error} />
      {room.kind !== RoomKind.CONNECTION && <Invite room={room} onInvited={onChanged} />}
      {room.kind === RoomKind.PATIENT && <CreateSubRoom room={room} />}
    </div>
  );
}

function MemberLine({ member }: { member: RoomMember }) {
  return (
    <span class="grow">
      {member.displayName}
      <span class="muted">
        {" "}
        {role(member.kind, member.profession)} {member.facility}
        {member.hub && `（${member.hub}）`}
        {member.role === Role.OWNER && " ・管理者"}
      </span>
      {STATES[member.state] && <span class="tag">{STATES[member.state]}</span>}
    </span>
  );
}

function Invite({ room, onInvited }: { room: GetRoomResponse; onInvited: () => void }) {
  const [query, setQuery] = useState("");
  const [found, setFound] = useState<{ accountId: bigint; displayName: string; facility: string }[]>([]);
  const [done, setDone] = useState<string | null>(null);
  const search = useAction("検索", (c, _key) => c.search.search({ query: query.trim(), pageSize: 20 }));
  const invite = useAction("招待", (c, key, who: bigint | string) =>
    c.rooms.inviteMember({
      idempotencyKey: key,
      roomId: room.roomId,
      invitee: typeof who === "string" ? { case: "remoteLogin", value: who } : { case: "accountId", value: who },
    }),
  );
  const inRoom = new Set(room.members.map((m) => m.accountId));
  const find = async (e: Event) => {
    e.preventDefault();
    setDone(null);
    const q = query.trim();
    if (q.includes("@")) {
      if (await invite.run(q)) (setDone(`${q} を招待しました。`), onInvited());
      return;
    }
    const result = await search.run();
    if (result) setFound(result.people.filter((p) => !inRoom.has(p.accountId)));
  };
  const add = async (who: bigint, name: string) => {
    if (await invite.run(who)) {
      setDone(`${name} さんを招待しました。`);
      setFound(found.filter((p) => p.accountId !== who));
      onInvited();
    }
  };
  return (
    <form onSubmit={find} aria-label="メンバーを招待">
      <h3>メンバーを招待</h3>
      <div class="row">
        <label class="grow">
          <span class="sr-only">名前・施設名、または 他のハブの人は login@ハブ名</span>
          <input type="search" placeholder="名前・施設名（他のハブ: login@ハブ名）" minLength={2} required value={query} onInput={(e) => setQuery(e.currentTarget.value)} />
        </label>
        <button class="secondary">{query.includes("@") ? "招待" : "検索"}</button>
      </div>
      <ul class="plain">
        {found.map((p) => (
          <li class="row">
            <span class="grow">
              {p.displayName} <span class="muted">{p.facility}</span>
            </span>
            <button type="button" class="primary small" disabled={invite.busy} onClick={() => add(p.accountId, p.displayName)}>
              招待
            </button>
          </li>
        ))}
      </ul>
      {done && <Notice>{done}</Notice>}
      <ErrorBox message={search.error ?? invite.error} />
    </form>
  );
}

function CreateSubRoom({ room }: { room: GetRoomResponse }) {
  const [name, setName] = useState("");
  const [chosen, setChosen] = useState<Set<bigint>>(new Set());
  const create = useAction("小部屋の作成", (c, key) =>
    c.rooms.createSubRoom({ idempotencyKey: key, timelineRoomId: room.roomId, name: name.trim(), memberIds: [...chosen] }),
  );
  const toggle = (id: bigint) => {
    const next = new Set(chosen);
    if (!next.delete(id)) next.add(id);
    setChosen(next);
  };
  const submit = async (e: Event) => {
    e.preventDefault();
    const created = await create.run();
    if (created) go("room", created.roomId);
  };
  return (
    <form onSubmit={submit} aria-label="小部屋を作成">
      <h3>小部屋を作成</h3>
      <label>
        小部屋の名前
        <input required placeholder="例：医師・訪問看護" value={name} onInput={(e) => setName(e.currentTarget.value)} />
      </label>
      <fieldset>
        <legend>参加するメンバー</legend>
        {room.members
          .filter((m) => m.state === MemberState.ACTIVE)
          .map((m) => (
            <label class="check">
              <input type="checkbox" checked={chosen.has(m.accountId)} onChange={() => toggle(m.accountId)} />
              {m.displayName}
            </label>
          ))}
      </fieldset>
      <ErrorBox message={create.error} />
      <button class="secondary">作成</button>
    </form>
  );
}
