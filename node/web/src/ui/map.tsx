// 資源マップ: find facilities by kind, service, municipality, words, acceptance and distance
// (a list; no external map tiles), a facility's page, and starting to work with it: a care
// request to the facility or a connection with one of its staff.
import { useState } from "preact/hooks";
import { CareRequestKind } from "../gen/kizuna/care_requests/v1/care_request_service_pb";
import { FacilityKind, type Facility, type FacilityProfile, type FacilityStatus } from "../gen/kizuna/common/v1/types_pb";
import { useApp } from "./app-context";
import { PendingTag } from "./disaster/forms";
import { EnumOptions, ErrorBox, Loading, Notice, PageTitle, useAction, useLoad } from "./common";
import { FACILITY_KINDS, OPERATIONS, REQUEST_KINDS, SUPPLIES, facilityStatusLine, profession, when } from "./labels";
import { go, href } from "./route";

interface Criteria {
  words: string;
  kind: FacilityKind;
  municipality: string;
  service: string;
  acceptingOnly: boolean;
  nearMe: boolean;
  radiusKm: number;
}

const NONE: Criteria = { words: "", kind: FacilityKind.UNSPECIFIED, municipality: "", service: "", acceptingOnly: false, nearMe: false, radiusKm: 10 };

export function MapView() {
  const [form, setForm] = useState<Criteria>(NONE);
  const [asked, setAsked] = useState<Criteria>(NONE);
  const [where, setWhere] = useState<GeolocationCoordinates | null>(null);
  const [geoError, setGeoError] = useState<string | null>(null);
  // Facilities picked for one care request to several of them.
  const [chosen, setChosen] = useState<Map<bigint, string>>(new Map());
  const choose = (f: Facility, on: boolean) => {
    const next = new Map(chosen);
    if (on) next.set(f.facilityId, f.name);
    else next.delete(f.facilityId);
    setChosen(next);
  };
  const found = useLoad(
    (c) =>
      c.directory.searchFacilities({
        words: asked.words.trim(),
        kinds: asked.kind ? [asked.kind] : [],
        municipality: asked.municipality.trim() || undefined,
        service: asked.service.trim() || undefined,
        acceptingOnly: asked.acceptingOnly,
        near: asked.nearMe && where ? { latE6: Math.round(where.latitude * 1e6), lonE6: Math.round(where.longitude * 1e6) } : undefined,
        radiusM: asked.nearMe ? BigInt(asked.radiusKm * 1000) : 0n,
        pageSize: 100,
      }),
    [asked, where],
  );
  const set = (change: Partial<Criteria>) => setForm({ ...form, ...change });
  const locate = (on: boolean) => {
    set({ nearMe: on });
    if (!on || where) return;
    navigator.geolocation?.getCurrentPosition(
      (p) => setWhere(p.coords),
      () => setGeoError("現在地を取得できませんでした。距離の条件なしで検索します。"),
    );
  };
  return (
    <section>
      <PageTitle title="資源マップ" />
      <form class="card" role="search" aria-label="施設を探す" onSubmit={(e) => (e.preventDefault(), setAsked(form))}>
        <label>
          キーワード
          <input type="search" placeholder="施設名・住所・サービス" value={form.words} onInput={(e) => set({ words: e.currentTarget.value })} />
        </label>
        <div class="row wrap">
          <label>
            種別
            <select value={form.kind} onChange={(e) => set({ kind: Number(e.currentTarget.value) })}>
              {Object.entries(FACILITY_KINDS).map(([value, label]) => (
                <option value={value}>{label || "すべて"}</option>
              ))}
            </select>
          </label>
          <label>
            市町村
            <input value={form.municipality} placeholder="例：宇都宮市" onInput={(e) => set({ municipality: e.currentTarget.value })} />
          </label>
          <label>
            サービス
            <input value={form.service} placeholder="例：在宅酸素" onInput={(e) => set({ service: e.currentTarget.value })} />
          </label>
        </div>
        <div class="row wrap">
          <label class="check">
            <input type="checkbox" checked={form.acceptingOnly} onChange={(e) => set({ acceptingOnly: e.currentTarget.checked })} />
            新規受け入れ可のみ
          </label>
          <label class="check">
            <input type="checkbox" checked={form.nearMe} onChange={(e) => locate(e.currentTarget.checked)} />
            現在地から
          </label>
          {form.nearMe && (
            <label>
              半径（km）
              <input type="number" min={1} max={100} value={form.radiusKm} onInput={(e) => set({ radiusKm: Number(e.currentTarget.value) || 10 })} />
            </label>
          )}
        </div>
        <ErrorBox message={geoError} />
        <button class="primary">検索</button>
      </form>
      <Loading loaded={found} />
      {found.data?.facilities.length === 0 && <p class="muted">条件に合う施設はありません。</p>}
      <ul class="rooms" aria-label="施設">
        {found.data?.facilities.map((f) => (
          <FacilityEntry facility={f} chosen={chosen.has(f.facilityId)} choose={(on) => choose(f, on)} />
        ))}
      </ul>
      {chosen.size > 0 && (
        <div class="card">
          <SendRequest to={[...chosen]} />
        </div>
      )}
    </section>
  );
}

function FacilityEntry({ facility: f, chosen, choose }: { facility: Facility; chosen: boolean; choose: (on: boolean) => void }) {
  return (
    <li class="room">
      <label class="check pick">
        <input type="checkbox" checked={chosen} onChange={(e) => choose(e.currentTarget.checked)} />
        リクエスト先に選ぶ
      </label>
      <a class="room-link" href={href("facility", f.facilityId)}>
        <span class="room-title">{f.name}</span>
        {f.distanceM !== undefined && <span class="room-time">{(Number(f.distanceM) / 1000).toFixed(1)} km</span>}
        <span class="room-preview">
          {FACILITY_KINDS[f.kind]}・{f.municipality}
          {f.hub && `（${f.hub}）`}
          {f.profile?.acceptingNewPatients && " ・新規受け入れ可"}
          {f.profile && f.profile.services.length > 0 && ` ・${f.profile.services.join("、")}`}
        </span>
        {f.disasterStatus && (
          <span class="room-preview disaster-status">
            災害時の状況：{facilityStatusLine(f.disasterStatus)}
            {f.disasterStatus.pending && <PendingTag />}
          </span>
        )}
      </a>
    </li>
  );
}

export function FacilityView({ id }: { id: bigint }) {
  const { me } = useApp();
  const page = useLoad((c) => c.directory.getFacility({ facilityId: id }), [id]);
  const connect = useAction("つながり申請", (c, key, who: bigint) => c.connections.requestConnection({ idempotencyKey: key, accountId: who }));
  const [asked, setAsked] = useState<string | null>(null);
  const f = page.data?.page?.facility;
  const ask = async (who: bigint, name: string) => {
    if (await connect.run(who)) setAsked(`${name} さんにつながり申請を送りました。承認されると1対1の部屋ができます。`);
  };
  return (
    <section>
      <PageTitle title={f?.name ?? "施設"} back={href("map")} />
      <Loading loaded={page} />
      {f && (
        <article class="card">
          <p>
            {FACILITY_KINDS[f.kind]}・{f.municipality}
            {f.hub && `（${f.hub} のハブ）`}
          </p>
          {f.disasterStatus && <DisasterStatus status={f.disasterStatus} />}
          {f.profile && (
            <dl>
              <dt>住所</dt>
              <dd>{f.profile.address || "—"}</dd>
              <dt>電話</dt>
              <dd>{f.profile.phone ? <a href={`tel:${f.profile.phone}`}>{f.profile.phone}</a> : "—"}</dd>
              <dt>サービス</dt>
              <dd>{f.profile.services.join("、") || "—"}</dd>
              <dt>新規受け入れ</dt>
              <dd>{f.profile.acceptingNewPatients ? "可" : "—"}</dd>
              {f.profile.note && (
                <>
                  <dt>備考</dt>
                  <dd class="post-text">{f.profile.note}</dd>
                </>
              )}
            </dl>
          )}
          <h3>スタッフ</h3>
          <ul class="plain">
            {page.data?.page?.staff.map((s) => (
              <li class="row">
                <span class="grow">
                  {s.displayName} <span class="muted">{profession(s.profession)}</span>
                </span>
                <button class="secondary small" disabled={connect.busy} onClick={() => ask(s.accountId, s.displayName)}>
                  つながる
                </button>
              </li>
            ))}
          </ul>
          {asked && <Notice>{asked}</Notice>}
          <ErrorBox message={connect.error} />
          {me.facilityId === f.facilityId && !f.hub ? (
            me.facilityAdmin && <EditProfile facilityId={f.facilityId} profile={f.profile} done={page.reload} />
          ) : (
            <SendRequest to={[[f.facilityId, f.name]]} />
          )}
        </article>
      )}
    </section>
  );
}

/** The facility's latest status in a disaster in force, as its staff (or the disaster office) reported it. */
function DisasterStatus({ status: s }: { status: FacilityStatus }) {
  return (
    <section class="notice disaster-status" aria-label="災害時の状況">
      <h3>
        災害時の状況（{when(s.observedAt)} 時点）{s.pending && <PendingTag />}
      </h3>
      <dl>
        <dt>稼働</dt>
        <dd>{OPERATIONS[s.operation] || "—"}</dd>
        <dt>電気・水・職員</dt>
        <dd>
          電気 {SUPPLIES[s.power] || "—"}・水 {SUPPLIES[s.water] || "—"}・職員 {SUPPLIES[s.staff] || "—"}
        </dd>
        <dt>受け入れ可能数</dt>
        <dd>{s.available}</dd>
        <dt>避難者の受け入れ</dt>
        <dd>{s.acceptsEvacuees ? "可" : "—"}</dd>
        <dt>新規患者の受け入れ</dt>
        <dd>{s.acceptsPatients ? "可" : "—"}</dd>
      </dl>
    </section>
  );
}

/** Its admins keep their facility's map entry current (what it offers, whether it takes patients). */
function EditProfile({ facilityId, profile, done }: { facilityId: bigint; profile?: FacilityProfile; done: () => void }) {
  const [form, setForm] = useState({
    address: profile?.address ?? "",
    phone: profile?.phone ?? "",
    services: profile?.services.join("、") ?? "",
    accepting: profile?.acceptingNewPatients ?? false,
    note: profile?.note ?? "",
  });
  const [saved, setSaved] = useState(false);
  const set = (change: Partial<typeof form>) => (setForm({ ...form, ...change }), setSaved(false));
  const save = useAction("施設情報の更新", (c, key) =>
    c.directory.updateFacilityProfile({
      idempotencyKey: key,
      facilityId,
      profile: {
        address: form.address.trim(),
        phone: form.phone.trim(),
        // Kept as it was: the location is set where it can be measured (the CLI takes it).
        location: profile?.location,
        services: form.services.split(/[、,]/).map((s) => s.trim()).filter((s) => s.length > 0),
        acceptingNewPatients: form.accepting,
        note: form.note.trim(),
      },
    }),
  );
  const submit = async (e: Event) => {
    e.preventDefault();
    if (await save.run()) (setSaved(true), done());
  };
  return (
    <form onSubmit={submit} aria-label="施設情報の編集">
      <h3>施設情報の編集（資源マップに載る内容）</h3>
      <label>
        住所
        <input maxLength={200} value={form.address} onInput={(e) => set({ address: e.currentTarget.value })} />
      </label>
      <label>
        電話
        <input type="tel" maxLength={30} value={form.phone} onInput={(e) => set({ phone: e.currentTarget.value })} />
      </label>
      <label>
        サービス（「、」区切り）
        <input value={form.services} placeholder="在宅酸素、看取り、24時間対応" onInput={(e) => set({ services: e.currentTarget.value })} />
      </label>
      <label class="check">
        <input type="checkbox" checked={form.accepting} onChange={(e) => set({ accepting: e.currentTarget.checked })} />
        新規の患者を受け入れ可
      </label>
      <label>
        備考
        <textarea rows={3} maxLength={2000} value={form.note} onInput={(e) => set({ note: e.currentTarget.value })} />
      </label>
      <ErrorBox message={save.error} />
      {saved && <Notice>施設情報を更新しました。</Notice>}
      <button class="primary" disabled={save.busy}>
        保存
      </button>
    </form>
  );
}

/** 「連携を始める」: a care request to one facility or to several (id, name) at once. */
function SendRequest({ to }: { to: [bigint, string][] }) {
  const [kind, setKind] = useState(CareRequestKind.COLLABORATION);
  const [title, setTitle] = useState("");
  const [details, setDetails] = useState("");
  const send = useAction("リクエストの送信", (c, key) =>
    c.requests.sendCareRequest({ idempotencyKey: key, kind, title: title.trim(), details: details.trim(), facilityIds: to.map(([id]) => id) }),
  );
  const submit = async (e: Event) => {
    e.preventDefault();
    const sent = await send.run();
    if (sent?.careRequest) go("requests", sent.careRequest.careRequestId);
  };
  return (
    <form onSubmit={submit} aria-label="連携を始める">
      <h3>連携を始める（リクエストを送る）</h3>
      <p class="muted">送り先: {to.map(([, name]) => name).join("、")}</p>
      <label>
        種類
        <select value={kind} onChange={(e) => setKind(Number(e.currentTarget.value))}>
          <EnumOptions labels={REQUEST_KINDS} />
        </select>
      </label>
      <label>
        件名
        <input required maxLength={100} value={title} onInput={(e) => setTitle(e.currentTarget.value)} />
      </label>
      <label>
        内容
        <textarea required rows={4} value={details} onInput={(e) => setDetails(e.currentTarget.value)} />
      </label>
      <ErrorBox message={send.error} />
      <button class="primary" disabled={send.busy}>
        送信
      </button>
    </form>
  );
}
