// 患者一覧, groups and connections: newest activity first, unread counts highlighted, filter by
// name and to unread; creating a patient or a group; answering connection requests.
import { useState } from "preact/hooks";
import { RoomListKind, type RoomSummary } from "../gen/kizuna/rooms/v1/room_service_pb";
import { useApp } from "./app-context";
import { ErrorBox, Loading, PageTitle, useAction, useDebounced, useLoad } from "./common";
import { ConnectionRequests } from "./connections";
import { age, when } from "./labels";
import { go, href } from "./route";
import { timestampDate } from "@bufbuild/protobuf/wkt";

const TITLES: Record<number, string> = {
  [RoomListKind.PATIENTS]: "患者一覧",
  [RoomListKind.GROUPS]: "グループ",
  [RoomListKind.CONNECTIONS]: "つながり",
};

/** Live events that change no room list: requests, and disaster mode's (its board follows those). */
const NOT_ROOMS = new Set<string | undefined>(["careRequestUpdated", "disasterChanged", "disasterObserved"]);

export function RoomList({ kind }: { kind: RoomListKind }) {
  const [filter, setFilter] = useState("");
  const [unreadOnly, setUnreadOnly] = useState(false);
  const name = useDebounced(filter.trim());
  const rooms = useLoad(
    (c) => c.rooms.listRooms({ kind, filter: name || undefined, unreadOnly, pageSize: 200 }),
    [kind, name, unreadOnly],
    (e) => !NOT_ROOMS.has(e.kind.case),
  );
  return (
    <section>
      <PageTitle title={TITLES[kind]} />
      {kind === RoomListKind.CONNECTIONS && <ConnectionRequests />}
      <div class="filters" role="search">
        <label class="grow">
          <span class="sr-only">名前で絞り込み</span>
          <input type="search" placeholder="名前で絞り込み" value={filter} onInput={(e) => setFilter(e.currentTarget.value)} />
        </label>
        <label class="check">
          <input type="checkbox" checked={unreadOnly} onChange={(e) => setUnreadOnly(e.currentTarget.checked)} />
          未読のみ
        </label>
      </div>
      <Loading loaded={rooms} />
      {rooms.data && rooms.data.rooms.length === 0 && <p class="muted">該当する部屋はありません。</p>}
      <ul class="rooms" aria-label={TITLES[kind]}>
        {rooms.data?.rooms.map((r) => <RoomEntry room={r} />)}
      </ul>
      {kind === RoomListKind.PATIENTS && <CreatePatient />}
      {kind === RoomListKind.GROUPS && <CreateGroup />}
    </section>
  );
}

function RoomEntry({ room }: { room: RoomSummary }) {
  return (
    <li class={room.unread > 0n ? "room unread" : "room"}>
      <a href={href("room", room.roomId)} class="room-link">
        <span class="room-title">{room.title}</span>
        {room.unread > 0n && (
          <span class="badge" aria-label={`未読 ${room.unread} 件`}>
            {String(room.unread)}
          </span>
        )}
        <span class="room-time">{when(room.lastPostAt)}</span>
        <span class="room-preview">{room.preview}</span>
        {room.homeHub && (
          <span class="room-hub muted">
            {room.homeHub} のハブの部屋{room.homeHeardAt && `（最終同期 ${age(timestampDate(room.homeHeardAt))}）`}
          </span>
        )}
      </a>
      {room.subRooms.length > 0 && (
        <ul class="sub-rooms" aria-label={`${room.title} の小部屋`}>
          {room.subRooms.map((s) => (
            <RoomEntry room={s} />
          ))}
        </ul>
      )}
    </li>
  );
}

function CreatePatient() {
  const { me } = useApp();
  const [open, setOpen] = useState(false);
  const [name, setName] = useState("");
  const [kana, setKana] = useState("");
  const create = useAction("患者の登録", (c, key) => c.rooms.createPatient({ idempotencyKey: key, name: name.trim(), kana: kana.trim() }));
  if (me.facilityId === undefined) return null;
  if (!open) {
    return (
      <button class="secondary" onClick={() => setOpen(true)}>
        ＋ 患者を登録
      </button>
    );
  }
  const submit = async (e: Event) => {
    e.preventDefault();
    const created = await create.run();
    if (created) go("room", created.roomId);
  };
  return (
    <form class="card" onSubmit={submit} aria-label="患者を登録">
      <label>
        患者氏名
        <input required value={name} onInput={(e) => setName(e.currentTarget.value)} />
      </label>
      <label>
        ふりがな
        <input value={kana} onInput={(e) => setKana(e.currentTarget.value)} />
      </label>
      <ErrorBox message={create.error} />
      <button class="primary" disabled={create.busy}>
        登録
      </button>
    </form>
  );
}

function CreateGroup() {
  const [name, setName] = useState("");
  const create = useAction("グループの作成", (c, key) => c.rooms.createGroup({ idempotencyKey: key, name: name.trim() }));
  const submit = async (e: Event) => {
    e.preventDefault();
    const created = await create.run();
    if (created) go("room", created.roomId);
  };
  return (
    <form class="card inline" onSubmit={submit} aria-label="グループを作成">
      <label class="grow">
        新しいグループ名
        <input required value={name} onInput={(e) => setName(e.currentTarget.value)} />
      </label>
      <button class="secondary" disabled={create.busy}>
        作成
      </button>
      <ErrorBox message={create.error} />
    </form>
  );
}
