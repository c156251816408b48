// リクエスト: care requests to facilities. The inbox (addressed to my facility) and those I
// sent, each with every facility's answer; answering and cancelling.
import { useState } from "preact/hooks";
import { AnswerState, CareRequestBox, type CareRequest } from "../gen/kizuna/care_requests/v1/care_request_service_pb";
import { useApp } from "./app-context";
import { ErrorBox, Loading, PageTitle, useAction, useLoad } from "./common";
import { ANSWER_STATES, REQUEST_KINDS, when } from "./labels";
import { href } from "./route";

export function RequestsView() {
  const [box, setBox] = useState(CareRequestBox.RECEIVED);
  const list = useLoad((c) => c.requests.listCareRequests({ box, pageSize: 100 }), [box], (e) => e.kind.case === "careRequestUpdated");
  return (
    <section>
      <PageTitle title="リクエスト" />
      <div class="segmented" role="tablist" aria-label="受信・送信">
        {[
          [CareRequestBox.RECEIVED, "受信"],
          [CareRequestBox.SENT, "送信済み"],
        ].map(([value, label]) => (
          <button role="tab" aria-selected={box === value} onClick={() => setBox(value as CareRequestBox)}>
            {label}
          </button>
        ))}
      </div>
      <Loading loaded={list} />
      {list.data?.careRequests.length === 0 && <p class="muted">リクエストはありません。新しいリクエストは資源マップの施設ページから送れます。</p>}
      <ul class="rooms">
        {list.data?.careRequests.map((r) => (
          <li class={pending(r) ? "room unread" : "room"}>
            <a class="room-link" href={href("requests", r.careRequestId)}>
              <span class="room-title">
                【{REQUEST_KINDS[r.kind]}】{r.title}
              </span>
              <span class="room-time">{when(r.sentAt)}</span>
              <span class="room-preview">
                {r.fromName}（{r.fromFacility}
                {r.fromHub && `・${r.fromHub}`}）→ {r.recipients.map((x) => `${x.facilityName}: ${ANSWER_STATES[x.state]}`).join("、")}
              </span>
            </a>
          </li>
        ))}
      </ul>
    </section>
  );
}

function pending(r: CareRequest): boolean {
  return r.recipients.some((x) => x.state === AnswerState.PENDING);
}

export function RequestView({ id }: { id: bigint }) {
  const { me } = useApp();
  const request = useLoad((c) => c.requests.getCareRequest({ careRequestId: id }), [id], (e) => e.kind.case === "careRequestUpdated" && e.kind.value === id);
  const r = request.data?.careRequest;
  return (
    <section>
      <PageTitle title="リクエスト" back={href("requests")} />
      <Loading loaded={request} />
      {r && (
        <article class="card">
          <h2>
            【{REQUEST_KINDS[r.kind]}】{r.title}
          </h2>
          <p class="muted">
            {r.fromName}（{r.fromFacility}
            {r.fromHub && `・${r.fromHub}`}） {when(r.sentAt)}
            {r.patientName && ` ・患者: ${r.patientName}`}
          </p>
          <p class="post-text">{r.details}</p>
          <h3>送付先と回答</h3>
          <ul class="plain">
            {r.recipients.map((x) => (
              <li>
                <strong>{x.facilityName}</strong>
                {x.facilityHub && `（${x.facilityHub}）`}：{ANSWER_STATES[x.state]}
                {x.answeredByName && ` ${x.answeredByName} ${when(x.answeredAt)}`}
                {x.note && <span class="muted">「{x.note}」</span>}
              </li>
            ))}
          </ul>
          {r.recipients.some((x) => x.facilityId === me.facilityId && x.state === AnswerState.PENDING) && <Answer id={id} done={request.reload} />}
          {r.fromId === me.accountId && pending(r) && <Cancel id={id} done={request.reload} />}
        </article>
      )}
    </section>
  );
}

function Answer({ id, done }: { id: bigint; done: () => void }) {
  const [note, setNote] = useState("");
  const answer = useAction("回答", (c, key, accept: boolean) => c.requests.answerCareRequest({ idempotencyKey: key, careRequestId: id, accept, note: note.trim() }));
  const decide = async (accept: boolean) => {
    if (await answer.run(accept)) done();
  };
  return (
    <div aria-label="回答">
      <label>
        回答のメモ（任意）
        <input placeholder="例：本日14時に受け入れます" value={note} onInput={(e) => setNote(e.currentTarget.value)} />
      </label>
      <div class="row">
        <button class="primary" disabled={answer.busy} onClick={() => decide(true)}>
          受諾
        </button>
        <button class="secondary" disabled={answer.busy} onClick={() => decide(false)}>
          辞退
        </button>
      </div>
      <ErrorBox message={answer.error} />
    </div>
  );
}

function Cancel({ id, done }: { id: bigint; done: () => void }) {
  const cancel = useAction("取り消し", (c, key) => c.requests.cancelCareRequest({ idempotencyKey: key, careRequestId: id }));
  return (
    <div>
      <button class="link danger" disabled={cancel.busy} onClick={async () => confirm("このリクエストを取り消しますか？") && (await cancel.run()) && done()}>
        リクエストを取り消す
      </button>
      <ErrorBox message={cancel.error} />
    </div>
  );
}
