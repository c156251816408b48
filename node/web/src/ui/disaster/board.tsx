// 災害ボード: one disaster's counts (in total, per municipality and per facility, most urgent
// first as the hub orders them), the patients' safety checks the viewer may see (their team's;
// every patient for operators), most urgent first, and the facilities' statuses. The team
// records a patient's safety check from its row, a facility's staff its status; operators
// declare and end disasters and export the board as CSV. Refreshed live (disaster_observed).
import { useEffect, useState } from "preact/hooks";
import { saveAs } from "../../api/download";
import { AccountKind } from "../../gen/kizuna/common/v1/types_pb";
import {
  Need,
  StatusFilter,
  type Disaster,
  type FacilityRow,
  type GetBoardResponse,
  type Observation,
  type PatientRow,
  type Tally,
} from "../../gen/kizuna/disaster/v1/disaster_service_pb";
import { useApp } from "../app-context";
import { ErrorBox, Loading, Notice, PageTitle, useAction, useLoad } from "../common";
import { DEVICES, NEEDS, facilityStatusLine, safetyLine, when } from "../labels";
import { href } from "../route";
import { DeclareForm, FacilityStatusForm, PendingBadge, SafetyCheckForm, recordedNote } from "./forms";
import { inForce, useDisasters } from "./list";

/** Rows shown at most (the hub's page size); the count says how many matched. */
const ROWS = 200;

const FILTERS: [StatusFilter, string][] = [
  [StatusFilter.UNSPECIFIED, "すべて"],
  [StatusFilter.UNCHECKED, "未確認"],
  [StatusFilter.NEEDS_HELP, "要支援"],
  [StatusFilter.UNREACHABLE, "連絡不通"],
  [StatusFilter.EVACUATED, "避難済み"],
  [StatusFilter.SAFE, "無事"],
];

/** #/disaster (the first disaster in force, else the newest) or #/disaster/<id>. */
export function DisasterView({ id }: { id: bigint | null }) {
  const { me } = useApp();
  const list = useDisasters();
  const disasters = list.data?.disasters ?? [];
  const chosen = id ?? disasters[0]?.disasterId;
  const mayDeclare = me.kind === AccountKind.OPERATOR || (me.facilityAdmin && list.data?.adminsMayDeclare === true);
  const anyInForce = disasters.some(inForce);
  const tools = list.data && (
    <>
      {mayDeclare && <Declare open={!anyInForce} done={list.reload} />}
      {me.kind === AccountKind.OPERATOR && <Policy allowed={list.data.adminsMayDeclare} done={list.reload} />}
    </>
  );
  return (
    <section>
      <PageTitle title="災害ボード" />
      <Loading loaded={list} />
      {disasters.length > 1 && (
        <nav class="chips" aria-label="災害の一覧">
          {disasters.map((d) => (
            <a class={inForce(d) ? "chip in-force" : "chip"} href={href("disaster", d.disasterId)} aria-current={d.disasterId === chosen ? "page" : undefined}>
              {d.name}
              {!inForce(d) && "（終了）"}
            </a>
          ))}
        </nav>
      )}
      {list.data && disasters.length === 0 && <p class="muted">宣言された災害はありません。</p>}
      {/* Declaring comes first while none is in force, after the board while one is. */}
      {!anyInForce && tools}
      {chosen !== undefined && <Board key={String(chosen)} id={chosen} />}
      {anyInForce && tools}
    </section>
  );
}

function Declare({ open, done }: { open: boolean; done: () => void }) {
  return (
    <details class="card" open={open}>
      <summary>災害を宣言する</summary>
      <p class="muted">宣言すると、すべての利用者の画面に災害モードの表示が出ます。対象の市町村の患者と施設が災害ボードに載ります。</p>
      <DeclareForm done={(d) => (done(), d && location.replace(href("disaster", d.disasterId)))} />
    </details>
  );
}

/** Operators: whether facility admins may declare for their own municipality. */
function Policy({ allowed, done }: { allowed: boolean; done: () => void }) {
  const set = useAction("設定の変更", (c, key, on: boolean) => c.disaster.setDisasterPolicy({ idempotencyKey: key, adminsMayDeclare: on }));
  return (
    <div>
      <label class="check">
        <input type="checkbox" checked={allowed} disabled={set.busy} onChange={async (e) => (await set.run(e.currentTarget.checked)) && done()} />
        施設管理者が自施設の市町村に災害を宣言することを認める
      </label>
      <ErrorBox message={set.error} />
    </div>
  );
}

interface Filter {
  status: StatusFilter;
  municipality: string;
  lifeSupportOnly: boolean;
}

function Board({ id }: { id: bigint }) {
  const { hub } = useApp();
  const [filter, setFilter] = useState<Filter>({ status: StatusFilter.UNSPECIFIED, municipality: "", lifeSupportOnly: false });
  const board = useLoad(
    (c) =>
      c.disaster.getBoard({
        disasterId: id,
        status: filter.status,
        municipality: filter.municipality || undefined,
        lifeSupportOnly: filter.lifeSupportOnly,
        pageSize: ROWS,
      }),
    [id, filter],
    (e) => (e.kind.case === "disasterObserved" || e.kind.case === "disasterChanged") && e.kind.value === id,
  );
  // An answer from a node's possibly stale copy says so in the connection banner, as a timeline does.
  useEffect(() => {
    if (board.data) hub.noteStale(board.data.staleReason !== "");
  }, [board.data]);
  const b = board.data;
  const d = b?.disaster;
  return (
    <>
      <Loading loaded={board} />
      {b && d && (
        <>
          <Heading disaster={d} board={b} reload={board.reload} />
          {b.total && <Totals tally={b.total} />}
          <TallyTable caption="市町村別" rows={b.municipalities.map((m) => [m.municipality || "（市町村未設定）", m.tally])} />
          <TallyTable caption="施設別（チームにその施設の職員がいる患者）" rows={b.facilities.map((f) => [f.name, f.tally])} />
          <Filters disaster={d} board={b} filter={filter} set={(change) => setFilter({ ...filter, ...change })} />
          <Patients board={b} disasterId={id} open={inForce(d)} reload={board.reload} />
          <Facilities board={b} disasterId={id} open={inForce(d)} reload={board.reload} />
        </>
      )}
    </>
  );
}

/** The disaster, whether it is in force, what this node holds for the hub, and its operators' actions. */
function Heading({ disaster: d, board: b, reload }: { disaster: Disaster; board: GetBoardResponse; reload: () => void }) {
  const { me } = useApp();
  const list = useDisasters();
  const mayEnd = inForce(d) && (me.kind === AccountKind.OPERATOR || d.declaredBy === me.accountId);
  return (
    <div class="card">
      <h2>
        {d.name}
        {inForce(d) ? <span class="tag alarm">発令中</span> : <span class="tag">終了</span>}
      </h2>
      <p class="muted">
        対象：{d.municipalities.join("・")} ／ 宣言 {when(d.startedAt)}
        {d.endedAt && ` ／ 終了 ${when(d.endedAt)}`}
      </p>
      {b.staleReason && (
        <p class="notice" role="status">
          接続先のサーバーはハブから切り離されています。この画面は最新でない可能性があります（{b.staleReason}）。
        </p>
      )}
      {b.pendingHere > 0 && <Notice>このノードに {b.pendingHere} 件の記録があり、ハブへの反映を待っています。</Notice>}
      <div class="row wrap">
        {me.kind === AccountKind.OPERATOR && <Export disasterId={d.disasterId} />}
        {mayEnd && <End disaster={d} done={() => (reload(), list.reload())} />}
      </div>
    </div>
  );
}

function Export({ disasterId }: { disasterId: bigint }) {
  const exported = useAction("CSVの書き出し", (c) => c.disaster.exportBoard({ disasterId }));
  const run = async () => {
    const answer = await exported.run();
    if (answer) saveAs(new Blob([answer.csv as Uint8Array<ArrayBuffer>], { type: "text/csv;charset=utf-8" }), answer.filename);
  };
  return (
    <>
      <button class="secondary" disabled={exported.busy} onClick={run}>
        CSVを書き出す
      </button>
      <ErrorBox message={exported.error} />
    </>
  );
}

function End({ disaster: d, done }: { disaster: Disaster; done: () => void }) {
  const end = useAction("災害の終了", (c, key) => c.disaster.endDisaster({ idempotencyKey: key, disasterId: d.disasterId }));
  return (
    <>
      <button class="danger" disabled={end.busy} onClick={async () => confirm(`「${d.name}」の災害モードを終了しますか？`) && (await end.run()) && done()}>
        この災害を終了する
      </button>
      <ErrorBox message={end.error} />
    </>
  );
}

function Totals({ tally: t }: { tally: Tally }) {
  const needs: [string, number][] = [
    [NEEDS[Need.POWER], t.needsPower],
    [NEEDS[Need.OXYGEN], t.needsOxygen],
    [NEEDS[Need.MEDICINE], t.needsMedicine],
    [NEEDS[Need.EVACUATION], t.needsEvacuation],
    [NEEDS[Need.CARE], t.needsCare],
  ];
  const stat = (label: string, n: number, cls = "") => (
    <li class={cls}>
      <strong>{n}</strong>
      <span>{label}</span>
    </li>
  );
  return (
    <section class="card" aria-label="全体">
      <ul class="stats">
        {stat("対象", t.patients)}
        {stat("確認済み", t.checked)}
        {stat("要支援", t.needsHelp, t.needsHelp ? "alarm" : "")}
        {stat("連絡不通", t.unreachable, t.unreachable ? "warn" : "")}
        {stat("避難済み", t.evacuated)}
        {stat("無事", t.safe)}
        {stat("未確認", t.patients - t.checked)}
        {stat("生命維持機器・未確認", t.lifeSupportUnchecked, t.lifeSupportUnchecked ? "warn" : "")}
      </ul>
      <p class="muted">
        生命維持機器を使う患者 {t.lifeSupport}人
        {needs.some(([, n]) => n > 0) && ` ／ 必要な支援：${needs.filter(([, n]) => n > 0).map(([l, n]) => `${l} ${n}人`).join("・")}`}
      </p>
    </section>
  );
}

function TallyTable({ caption, rows }: { caption: string; rows: [string, Tally | undefined][] }) {
  if (rows.length === 0) return null;
  return (
    <div class="table-scroll" role="region" aria-label={caption} tabIndex={0}>
      <table class="tally">
        <caption>{caption}</caption>
        <thead>
          <tr>
            <th scope="col">名称</th>
            <th scope="col">対象</th>
            <th scope="col">確認済</th>
            <th scope="col">要支援</th>
            <th scope="col">不通</th>
            <th scope="col">避難</th>
            <th scope="col">機器・未確認</th>
          </tr>
        </thead>
        <tbody>
          {rows.map(([name, t]) => (
            <tr class={t?.needsHelp ? "alarm" : undefined}>
              <th scope="row">{name}</th>
              <td>{t?.patients ?? 0}</td>
              <td>{t?.checked ?? 0}</td>
              <td>{t?.needsHelp ?? 0}</td>
              <td>{t?.unreachable ?? 0}</td>
              <td>{t?.evacuated ?? 0}</td>
              <td>{t?.lifeSupportUnchecked ?? 0}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Filters({ disaster, board, filter, set }: { disaster: Disaster; board: GetBoardResponse; filter: Filter; set: (change: Partial<Filter>) => void }) {
  const places = [...new Set([...disaster.municipalities, ...board.municipalities.map((m) => m.municipality).filter((m) => m)])];
  return (
    <div class="filters card" role="search" aria-label="患者の絞り込み">
      <label>
        状況
        <select value={filter.status} onChange={(e) => set({ status: Number(e.currentTarget.value) })}>
          {FILTERS.map(([value, label]) => (
            <option value={value}>{label}</option>
          ))}
        </select>
      </label>
      <label>
        市町村
        <select value={filter.municipality} onChange={(e) => set({ municipality: e.currentTarget.value })}>
          <option value="">すべて</option>
          {places.map((m) => (
            <option value={m}>{m}</option>
          ))}
        </select>
      </label>
      <label class="check">
        <input type="checkbox" checked={filter.lifeSupportOnly} onChange={(e) => set({ lifeSupportOnly: e.currentTarget.checked })} />
        生命維持機器の患者のみ
      </label>
    </div>
  );
}

function Patients({ board: b, disasterId, open, reload }: { board: GetBoardResponse; disasterId: bigint; open: boolean; reload: () => void }) {
  const { me } = useApp();
  // Professionals see their teams' patients only, so each row is one they may record for;
  // operators see every patient and record none (they are on no team).
  const mayRecord = open && me.kind !== AccountKind.OPERATOR;
  return (
    <section aria-label="患者の安否">
      <h2>患者の安否</h2>
      <p class="muted">
        {b.matching > b.patients.length ? `${b.matching}人中 ${b.patients.length}人を表示（緊急度の高い順）` : `${b.patients.length}人（緊急度の高い順）`}
        {me.kind !== AccountKind.OPERATOR && "。表示されるのは、あなたがチームに入っている患者です。"}
      </p>
      {b.patients.length === 0 && <p class="muted">該当する患者はいません。</p>}
      <ul class="rooms" aria-label="安否の一覧">
        {b.patients.map((p) => (
          <PatientEntry key={String(p.patientId)} row={p} disasterId={disasterId} mayRecord={mayRecord} reload={reload} />
        ))}
      </ul>
    </section>
  );
}

/** Urgency 0 (needs power or oxygen, or help on life support) .. 7 (safe), as the row's colour. */
function urgencyClass(urgency: number): string {
  if (urgency === 0) return "room urgent";
  if (urgency <= 3) return "room warn";
  return "room";
}

function PatientEntry({ row: p, disasterId, mayRecord, reload }: { row: PatientRow; disasterId: bigint; mayRecord: boolean; reload: () => void }) {
  const [recording, setRecording] = useState(false);
  const [recorded, setRecorded] = useState<string | null>(null);
  const o = p.current;
  const check = o?.report.case === "safetyCheck" ? o.report.value : undefined;
  const done = (observation: Observation | undefined) => {
    setRecording(false);
    setRecorded(recordedNote(observation));
    reload();
  };
  return (
    <li class={urgencyClass(p.urgency)} data-patient={String(p.patientId)}>
      <div class="entry">
        <div class="entry-head">
          <strong>{p.name}</strong>
          <span class="muted">{p.municipality || "市町村未設定"}</span>
          {p.devices.map((d) => (
            <span class="tag device">{DEVICES[d]}</span>
          ))}
        </div>
        <p class="safety">
          <span class="safety-status">{safetyLine(check)}</span>
          <PendingBadge observation={o} />
        </p>
        <RecordedBy observation={o} recorded={recorded} />
        <div class="row wrap">
          {mayRecord && (
            <button class="secondary small" aria-expanded={recording} onClick={() => (setRecording(!recording), setRecorded(null))}>
              {recording ? "閉じる" : "安否を記録"}
            </button>
          )}
        </div>
        {recording && <SafetyCheckForm disasterId={disasterId} patientId={p.patientId} name={p.name} done={done} />}
        {o && <History disasterId={disasterId} subject={{ case: "patientId", value: p.patientId }} />}
      </div>
    </li>
  );
}

function Facilities({ board: b, disasterId, open, reload }: { board: GetBoardResponse; disasterId: bigint; open: boolean; reload: () => void }) {
  if (b.facilityStatuses.length === 0) return null;
  return (
    <section aria-label="施設の状況">
      <h2>施設の状況</h2>
      <ul class="rooms" aria-label="施設の状況の一覧">
        {b.facilityStatuses.map((f) => (
          <FacilityEntry key={String(f.facilityId)} row={f} disasterId={disasterId} open={open} reload={reload} />
        ))}
      </ul>
    </section>
  );
}

function FacilityEntry({ row: f, disasterId, open, reload }: { row: FacilityRow; disasterId: bigint; open: boolean; reload: () => void }) {
  const { me } = useApp();
  const [reporting, setReporting] = useState(false);
  const [recorded, setRecorded] = useState<string | null>(null);
  const o = f.current;
  const status = o?.report.case === "facilityStatus" ? o.report.value : undefined;
  const mayReport = open && (me.kind === AccountKind.OPERATOR || me.facilityId === f.facilityId);
  const done = (observation: Observation | undefined) => {
    setReporting(false);
    setRecorded(recordedNote(observation));
    reload();
  };
  return (
    <li class="room" data-facility={String(f.facilityId)}>
      <div class="entry">
        <div class="entry-head">
          <a href={href("facility", f.facilityId)}>{f.name}</a>
          <span class="muted">{f.municipality}</span>
        </div>
        <p class="safety">
          <span>{status ? facilityStatusLine(status) : "未報告"}</span>
          <PendingBadge observation={o} />
        </p>
        <RecordedBy observation={o} recorded={recorded} />
        {mayReport && (
          <button class="secondary small" aria-expanded={reporting} onClick={() => (setReporting(!reporting), setRecorded(null))}>
            {reporting ? "閉じる" : "状況を報告"}
          </button>
        )}
        {reporting && <FacilityStatusForm disasterId={disasterId} facilityId={f.facilityId} name={f.name} current={status} done={done} />}
        {o && <History disasterId={disasterId} subject={{ case: "facilityId", value: f.facilityId }} />}
      </div>
    </li>
  );
}

type Subject = { case: "patientId"; value: bigint } | { case: "facilityId"; value: bigint };

/** Every record of a patient (or facility) in the disaster, fetched when opened. */
function History({ disasterId, subject }: { disasterId: bigint; subject: Subject }) {
  const [open, setOpen] = useState(false);
  return (
    <details class="seen" onToggle={(e) => setOpen(e.currentTarget.open)}>
      <summary>記録の履歴</summary>
      {open && <HistoryList disasterId={disasterId} subject={subject} />}
    </details>
  );
}

function HistoryList({ disasterId, subject }: { disasterId: bigint; subject: Subject }) {
  const history = useLoad(
    (c) => c.disaster.listObservations({ disasterId, subject }),
    [disasterId, subject.case, subject.value],
    (e) => e.kind.case === "disasterObserved" && e.kind.value === disasterId,
  );
  return (
    <>
      <Loading loaded={history} />
      <ul class="plain history">
        {history.data?.observations
          .slice()
          .reverse()
          .map((o) => (
            <li>
              {when(o.observedAt)} {o.authorName}：
              {o.report.case === "safetyCheck" ? safetyLine(o.report.value) : o.report.case === "facilityStatus" ? facilityStatusLine(o.report.value) : ""}
              <PendingBadge observation={o} />
              {o.note && <span class="muted">「{o.note}」</span>}
            </li>
          ))}
      </ul>
    </>
  );
}

/** Who recorded the current observation and when, its note, and what the last record here said. */
function RecordedBy({ observation: o, recorded }: { observation?: Observation; recorded: string | null }) {
  return (
    <>
      {o && (
        <p class="muted">
          {when(o.observedAt)} {o.authorName}
        </p>
      )}
      {o?.note && <p class="post-text">{o.note}</p>}
      {recorded && <Notice>{recorded}</Notice>}
    </>
  );
}
