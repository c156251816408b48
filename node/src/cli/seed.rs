//! The demo hub's believable small region (宇都宮 and 鹿沼): five facilities on the resource
//! map, twelve professionals, three patients with their teams, their municipalities and
//! life-support devices (disaster mode's board) and a sub-room, posts with unread
//! state, two groups, a connection and two requests to facilities. Seeded through the public
//! API, like any client would.

use anyhow::Context;
use kizuna_proto::accounts::account_service_client::AccountServiceClient;
use kizuna_proto::accounts::*;
use kizuna_proto::care_requests::care_request_service_client::CareRequestServiceClient;
use kizuna_proto::care_requests::{AnswerCareRequestRequest, CareRequestKind, SendCareRequestRequest};
use kizuna_proto::common::{FacilityProfile, GeoPoint};
use kizuna_proto::connections::connection_service_client::ConnectionServiceClient;
use kizuna_proto::connections::{AcceptConnectionRequest, RequestConnectionRequest};
use kizuna_proto::directory::UpdateFacilityProfileRequest;
use kizuna_proto::directory::directory_service_client::DirectoryServiceClient;
use kizuna_proto::disaster::disaster_service_client::DisasterServiceClient;
use kizuna_proto::disaster::{CareProfile, Device, SetCareProfileRequest};
use kizuna_proto::posts::post_service_client::PostServiceClient;
use kizuna_proto::posts::{CreatePostRequest, MarkReadRequest};
use kizuna_proto::rooms::invite_member_request::Invitee;
use kizuna_proto::rooms::room_service_client::RoomServiceClient;
use kizuna_proto::rooms::{
    CreateGroupRequest, CreatePatientRequest, CreateSubRoomRequest, InviteMemberRequest, ListRoomsRequest, Role,
    RoomListKind,
};
use tonic::transport::Channel;

use super::user::{authed, facility_kind, idempotency_key, profession};

/// Every demo account signs in with this password.
pub const DEMO_PASSWORD: &str = "kizuna-demo-2026";
pub const DEMO_OPERATOR: &str = "jimukyoku";

const FACILITIES: [(&str, &str, &str); 5] = [
    ("宇都宮在宅クリニック", "clinic", "宇都宮市"),
    ("とちぎ中央病院", "hospital", "宇都宮市"),
    ("みどり薬局", "pharmacy", "宇都宮市"),
    ("ひばり訪問看護ステーション", "visiting-nursing-station", "宇都宮市"),
    ("さくら居宅介護支援事業所", "care-office", "鹿沼市"),
];

/// A resource-map profile: address, phone, latitude e6, longitude e6, services, accepting new
/// patients.
type Profile = (&'static str, &'static str, i32, i32, &'static [&'static str], bool);

/// The profiles of FACILITIES, in order.
const PROFILES: [Profile; 5] = [
    ("宇都宮市本町1-1", "028-600-1001", 36_562_000, 139_884_000, &["在宅酸素", "看取り", "24時間対応"], true),
    ("宇都宮市中央5-2", "028-600-1002", 36_545_100, 139_870_000, &["入院受入", "レスパイト入院", "退院調整"], true),
    ("宇都宮市駅前通り3-3", "028-600-1003", 36_559_000, 139_899_000, &["在宅訪問", "無菌調剤"], true),
    ("宇都宮市戸祭4-4", "028-600-1004", 36_578_000, 139_905_000, &["看取り", "24時間対応", "訪問リハ"], false),
    ("鹿沼市上田町5-5", "0289-60-1005", 36_567_000, 139_745_000, &["ケアプラン作成"], true),
];

/// (login, name, profession, facility index, facility admin)
pub type Person = (&'static str, &'static str, &'static str, usize, bool);

pub const PEOPLE: [Person; 12] = [
    ("dr.sato", "佐藤 健一", "doctor", 0, true),
    ("clerk.kobayashi", "小林 直樹", "clerk", 0, false),
    ("dr.kato", "加藤 美和", "doctor", 1, true),
    ("ns.ogawa", "小川 由美", "nurse", 1, false),
    ("msw.ito", "伊藤 翔", "medical-social-worker", 1, false),
    ("ph.tanaka", "田中 誠", "pharmacist", 2, true),
    ("ph.mori", "森 彩", "pharmacist", 2, false),
    ("vn.suzuki", "鈴木 早苗", "visiting-nurse", 3, true),
    ("vn.takahashi", "高橋 智子", "visiting-nurse", 3, false),
    ("pt.yamamoto", "山本 大輔", "therapist", 3, false),
    ("cm.watanabe", "渡辺 恵子", "care-manager", 4, true),
    ("cw.nakamura", "中村 陽介", "care-worker", 4, false),
];

struct Seeder {
    accounts: AccountServiceClient<Channel>,
    rooms: RoomServiceClient<Channel>,
    posts: PostServiceClient<Channel>,
    connections: ConnectionServiceClient<Channel>,
    channel: Channel,
    ids: std::collections::HashMap<&'static str, (u64, String)>,
}

impl Seeder {
    fn who(&self, login: &str) -> anyhow::Result<(u64, String)> {
        self.ids.get(login).cloned().with_context(|| format!("demo account {login}"))
    }

    async fn login(&mut self, login: &'static str) -> anyhow::Result<String> {
        let req = LoginRequest {
            idempotency_key: idempotency_key(),
            login: login.into(),
            password: DEMO_PASSWORD.into(),
            device: "demo-seed".into(),
            ..Default::default()
        };
        Ok(self.accounts.login(req).await?.into_inner().token)
    }

    async fn patient(
        &mut self,
        owner: &str,
        name: &str,
        kana: &str,
        born: &str,
        address: &str,
        team: &[&str],
    ) -> anyhow::Result<(u64, u64)> {
        let (_, token) = self.who(owner)?;
        let req = CreatePatientRequest {
            idempotency_key: idempotency_key(),
            name: name.into(),
            kana: kana.into(),
            birth_date: born.into(),
            address: address.into(),
            notes: String::new(),
        };
        let created = self.rooms.create_patient(authed(req, &token)?).await?.into_inner();
        let room = created.room_id;
        for member in team {
            let (id, _) = self.who(member)?;
            let req = InviteMemberRequest {
                idempotency_key: idempotency_key(),
                room_id: room,
                invitee: Some(Invitee::AccountId(id)),
                role: Role::Member as i32,
            };
            self.rooms.invite_member(authed(req, &token)?).await?;
        }
        Ok((created.patient_id, room))
    }

    /// Where the patient lives and the devices their life depends on (disaster mode's board).
    async fn care_profile(
        &mut self,
        owner: &str,
        patient: u64,
        municipality: &str,
        devices: &[Device],
    ) -> anyhow::Result<()> {
        let (_, token) = self.who(owner)?;
        let profile =
            CareProfile { municipality: municipality.into(), devices: devices.iter().map(|d| *d as i32).collect() };
        let req =
            SetCareProfileRequest { idempotency_key: idempotency_key(), patient_id: patient, profile: Some(profile) };
        DisasterServiceClient::new(self.channel.clone()).set_care_profile(authed(req, &token)?).await?;
        Ok(())
    }

    async fn post(&mut self, who: &str, room: u64, text: &str) -> anyhow::Result<u64> {
        let (_, token) = self.who(who)?;
        let req = CreatePostRequest {
            idempotency_key: idempotency_key(),
            room_id: room,
            text: text.into(),
            reply_to: None,
            mention_ids: vec![],
            attachment_ids: Vec::new(),
        };
        Ok(self.posts.create_post(authed(req, &token)?).await?.into_inner().seq)
    }

    async fn read(&mut self, who: &str, room: u64, up_to_seq: u64) -> anyhow::Result<()> {
        let (_, token) = self.who(who)?;
        self.posts
            .mark_read(authed(
                MarkReadRequest { idempotency_key: idempotency_key(), room_id: room, up_to_seq },
                &token,
            )?)
            .await?;
        Ok(())
    }

    async fn group(&mut self, owner: &str, name: &str, members: &[&str]) -> anyhow::Result<u64> {
        let (_, token) = self.who(owner)?;
        let room = self
            .rooms
            .create_group(authed(CreateGroupRequest { idempotency_key: idempotency_key(), name: name.into() }, &token)?)
            .await?
            .into_inner()
            .room_id;
        for m in members {
            let (id, _) = self.who(m)?;
            self.rooms
                .invite_member(authed(
                    InviteMemberRequest {
                        idempotency_key: idempotency_key(),
                        room_id: room,
                        invitee: Some(Invitee::AccountId(id)),
                        role: Role::Member as i32,
                    },
                    &token,
                )?)
                .await?;
        }
        Ok(room)
    }
}

/// Seeds a fresh hub. Returns false (and changes nothing) when the hub already has an operator.
pub async fn seed(channel: Channel) -> anyhow::Result<bool> {
    Ok(seed_tochigi(channel, None).await?.is_some())
}

/// Gunma's side of the federated demo (前橋, 高崎, 桐生): three facilities, four professionals.
const GUNMA_FACILITIES: [(&str, &str, &str); 3] = [
    ("前橋在宅クリニック", "clinic", "前橋市"),
    ("桐生ひまわり訪問看護ステーション", "visiting-nursing-station", "桐生市"),
    ("たかさき中央薬局", "pharmacy", "高崎市"),
];

const GUNMA_PROFILES: [Profile; 3] = [
    ("前橋市大手町1-1", "027-600-2001", 36_389_000, 139_063_000, &["在宅酸素", "24時間対応"], true),
    ("桐生市本町2-2", "0277-60-2002", 36_405_000, 139_330_000, &["看取り", "訪問リハ"], true),
    ("高崎市八島町3-3", "027-600-2003", 36_322_000, 139_003_000, &["在宅訪問"], true),
];

pub const GUNMA_PEOPLE: [Person; 4] = [
    ("dr.hayashi", "林 浩二", "doctor", 0, true),
    ("vn.kimura", "木村 真理", "visiting-nurse", 1, true),
    ("cm.shimizu", "清水 久美", "care-manager", 1, false),
    ("ph.saito", "斎藤 亮", "pharmacist", 2, true),
];

/// The Gunma professional of the border patient's team, invited from Tochigi as `login@gunma`.
pub const BORDER_REMOTE: &str = "vn.kimura";
/// The border patient's name: Tochigi's side of 足利 and 桐生.
pub const BORDER_PATIENT: &str = "森田 キヨ";

/// Creates the operator; None when the hub already has one (it was seeded before).
async fn begin(channel: Channel, operator_name: &str) -> anyhow::Result<Option<(Seeder, String)>> {
    let mut accounts = AccountServiceClient::new(channel.clone());
    let init = InitOperatorRequest {
        idempotency_key: idempotency_key(),
        login: DEMO_OPERATOR.into(),
        display_name: operator_name.into(),
        password: DEMO_PASSWORD.into(),
    };
    match accounts.init_operator(init).await {
        Ok(_) => {}
        Err(s) if s.code() == tonic::Code::FailedPrecondition => return Ok(None),
        Err(s) => return Err(s).context("creating the demo operator"),
    }
    let mut s = Seeder {
        accounts,
        rooms: RoomServiceClient::new(channel.clone()),
        posts: PostServiceClient::new(channel.clone()),
        connections: ConnectionServiceClient::new(channel.clone()),
        channel,
        ids: Default::default(),
    };
    let op = s.login(DEMO_OPERATOR).await?;
    Ok(Some((s, op)))
}

impl Seeder {
    /// Registers, approves and profiles `facilities` (with `profiles`, in order); their ids.
    async fn facilities(
        &mut self,
        op: &str,
        facilities: &[(&str, &str, &str)],
        profiles: &[Profile],
    ) -> anyhow::Result<Vec<u64>> {
        let mut ids = Vec::new();
        for ((name, kind, municipality), profile) in facilities.iter().zip(profiles) {
            let req = RegisterFacilityRequest {
                idempotency_key: idempotency_key(),
                name: (*name).into(),
                kind: facility_kind(kind)? as i32,
                municipality: (*municipality).into(),
            };
            let id = self.accounts.register_facility(authed(req, op)?).await?.into_inner().facility_id;
            self.accounts
                .approve_facility(authed(
                    ApproveFacilityRequest { idempotency_key: idempotency_key(), facility_id: id },
                    op,
                )?)
                .await?;
            let (address, phone, lat_e6, lon_e6, services, accepting) = *profile;
            let profile = FacilityProfile {
                address: address.into(),
                phone: phone.into(),
                location: Some(GeoPoint { lat_e6, lon_e6 }),
                services: services.iter().map(|s| (*s).to_owned()).collect(),
                accepting_new_patients: accepting,
                note: String::new(),
            };
            let req = UpdateFacilityProfileRequest {
                idempotency_key: idempotency_key(),
                facility_id: id,
                profile: Some(profile),
            };
            DirectoryServiceClient::new(self.channel.clone()).update_facility_profile(authed(req, op)?).await?;
            ids.push(id);
        }
        Ok(ids)
    }

    /// Invites, registers, approves and signs in `people` (facility indexes into `facilities`).
    async fn people(&mut self, op: &str, people: &[Person], facilities: &[u64]) -> anyhow::Result<()> {
        for (login, name, prof, facility, admin) in people {
            let facility_id = *facilities.get(*facility).with_context(|| format!("facility of {login}"))?;
            let inv = IssueInvitationRequest {
                idempotency_key: idempotency_key(),
                facility_id,
                valid_hours: 24,
                as_admin: *admin,
            };
            let code = self.accounts.issue_invitation(authed(inv, op)?).await?.into_inner().code;
            let reg = RegisterRequest {
                idempotency_key: idempotency_key(),
                invitation_code: code,
                login: (*login).into(),
                display_name: (*name).into(),
                profession: profession(prof)? as i32,
                password: DEMO_PASSWORD.into(),
            };
            let id = self.accounts.register(reg).await?.into_inner().account_id;
            self.accounts
                .approve_account(authed(
                    ApproveAccountRequest { idempotency_key: idempotency_key(), account_id: id },
                    op,
                )?)
                .await?;
            let token = self.login(login).await?;
            self.ids.insert(login, (id, token));
        }
        Ok(())
    }

    /// 森田 キヨ, who lives in 足利 by the border: 佐藤's patient, with 鈴木 of Tochigi and a
    /// visiting nurse of Gunma (`remote`, `login@gunma`) in her team. The room stays on Tochigi.
    async fn border_patient(&mut self, remote: &str) -> anyhow::Result<u64> {
        let (_, room) = self
            .patient("dr.sato", BORDER_PATIENT, "もりた きよ", "1936-07-15", "足利市西宮町", &["vn.suzuki"])
            .await?;
        let (_, token) = self.who("dr.sato")?;
        let req = InviteMemberRequest {
            idempotency_key: idempotency_key(),
            room_id: room,
            invitee: Some(Invitee::RemoteLogin(remote.to_owned())),
            role: Role::Member as i32,
        };
        self.rooms.invite_member(authed(req, &token)?).await.context("inviting the Gunma nurse")?;
        self.post(
            "dr.sato",
            room,
            "足利市在住、桐生の訪問看護ステーション（群馬）の木村さんにもチームに入っていただきました。よろしくお願いします。",
        )
        .await?;
        Ok(room)
    }
}

/// Seeds Gunma's side of the federated demo. None when it was seeded before.
pub async fn seed_gunma(channel: Channel) -> anyhow::Result<Option<()>> {
    let Some((mut s, op)) = begin(channel, "ぐんま在宅医療連携 事務局").await? else { return Ok(None) };
    let facilities = s.facilities(&op, &GUNMA_FACILITIES, &GUNMA_PROFILES).await?;
    s.people(&op, &GUNMA_PEOPLE, &facilities).await?;
    let (_, room) = s
        .patient(
            "dr.hayashi",
            "小林 ハル",
            "こばやし はる",
            "1940-09-01",
            "前橋市千代田町",
            &["vn.kimura", "cm.shimizu", "ph.saito"],
        )
        .await?;
    s.post("dr.hayashi", room, "本日訪問。血圧 132/80、食欲あり。内服は変更なしです。").await?;
    s.post("vn.kimura", room, "入浴介助を行いました。皮膚トラブルはありません。").await?;
    Ok(Some(()))
}

/// A patient room the holder of `token` sees on this hub whose title contains `title`, once it
/// is there (a room of another hub appears when its copy has arrived).
pub async fn find_patient_room(channel: Channel, token: &str, title: &str) -> anyhow::Result<Option<u64>> {
    let req =
        ListRoomsRequest { kind: RoomListKind::Patients as i32, filter: Some(title.to_owned()), ..Default::default() };
    let rooms = RoomServiceClient::new(channel).list_rooms(authed(req, token)?).await?.into_inner().rooms;
    Ok(rooms.first().map(|r| r.room_id))
}

/// `login`'s session token on this hub, or None when the login is refused.
pub async fn sign_in(channel: Channel, login: &str) -> anyhow::Result<Option<String>> {
    let req = LoginRequest {
        idempotency_key: idempotency_key(),
        login: login.into(),
        password: DEMO_PASSWORD.into(),
        device: "demo-seed".into(),
        ..Default::default()
    };
    match AccountServiceClient::new(channel).login(req).await {
        Ok(r) => Ok(Some(r.into_inner().token)),
        Err(s) if s.code() == tonic::Code::Unauthenticated => Ok(None),
        Err(s) => Err(s).context("signing in"),
    }
}

/// Posts `text` into `room` as `login` (a member of this hub).
pub async fn post_as(channel: Channel, login: &'static str, room: u64, text: &str) -> anyhow::Result<()> {
    let token = sign_in(channel.clone(), login).await?.with_context(|| format!("{login} cannot sign in"))?;
    let req = CreatePostRequest {
        idempotency_key: idempotency_key(),
        room_id: room,
        text: text.into(),
        reply_to: None,
        mention_ids: vec![],
        attachment_ids: Vec::new(),
    };
    PostServiceClient::new(channel).create_post(authed(req, &token)?).await?;
    Ok(())
}

/// Seeds Tochigi's region. With `border_remote` (`login@hub`), also the border patient whose
/// team spans both hubs; returns her room then. None when the hub was seeded before.
pub async fn seed_tochigi(channel: Channel, border_remote: Option<&str>) -> anyhow::Result<Option<Option<u64>>> {
    let Some((mut s, op)) = begin(channel, "とちぎ在宅医療連携 事務局").await? else { return Ok(None) };
    let facilities = s.facilities(&op, &FACILITIES, &PROFILES).await?;
    s.people(&op, &PEOPLE, &facilities).await?;

    // 山田 花子: home oxygen, a sub-room for the doctor and the visiting nurse.
    let (yamada_patient, yamada) = s
        .patient(
            "dr.sato",
            "山田 花子",
            "やまだ はなこ",
            "1938-04-12",
            "宇都宮市戸祭町",
            &["vn.suzuki", "ph.tanaka", "cm.watanabe", "vn.takahashi"],
        )
        .await?;
    s.care_profile("dr.sato", yamada_patient, "宇都宮市", &[Device::HomeOxygen]).await?;
    s.post("dr.sato", yamada, "本日訪問診療。SpO2 94%（在宅酸素 1L）、血圧 128/76。浮腫は軽度で変わりありません。")
        .await?;
    s.post("vn.suzuki", yamada, "訪問看護です。昨夜は眠れたとのこと。酸素チューブの交換をしました。").await?;
    let p3 = s
        .post("ph.tanaka", yamada, "利尿薬が増量になったのでお薬カレンダーをセットし直しました。残薬は問題ありません。")
        .await?;
    s.read("dr.sato", yamada, p3).await?;
    s.post("cm.watanabe", yamada, "来週からデイサービスを週2回に増やします。ご家族も了承済みです。").await?;
    let (sato, _) = s.who("dr.sato")?;
    let (suzuki, sato_token) = (s.who("vn.suzuki")?.0, s.who("dr.sato")?.1);
    let sub = CreateSubRoomRequest {
        idempotency_key: idempotency_key(),
        timeline_room_id: yamada,
        name: "医師・訪問看護".into(),
        member_ids: vec![sato, suzuki],
    };
    let sub = s.rooms.create_sub_room(authed(sub, &sato_token)?).await?.into_inner().room_id;
    s.post(
        "vn.suzuki",
        sub,
        "ご本人が「入院はしたくない」と話されていました。看取りの方針を一度ご相談させてください。",
    )
    .await?;

    // 佐藤 一郎: discharge planning from the hospital.
    let (ichiro_patient, ichiro) = s
        .patient(
            "dr.sato",
            "佐藤 一郎",
            "さとう いちろう",
            "1945-11-03",
            "宇都宮市今泉",
            &["ns.ogawa", "msw.ito", "vn.takahashi", "pt.yamamoto", "cm.watanabe"],
        )
        .await?;
    s.care_profile("dr.sato", ichiro_patient, "宇都宮市", &[]).await?;
    s.post(
        "msw.ito",
        ichiro,
        "とちぎ中央病院 地域連携室です。来週金曜に退院予定です。退院前カンファレンスは水曜14時でいかがでしょうか。",
    )
    .await?;
    s.post("ns.ogawa", ichiro, "病棟看護師です。インスリンは1日1回に変更済み。ご本人の手技は安定しています。").await?;
    s.post("pt.yamamoto", ichiro, "退院後の訪問リハ、週1回で調整します。手すりの設置場所は自宅で確認します。").await?;

    // 高橋 トメ: pharmacy and care worker.
    let (tome_patient, tome) = s
        .patient(
            "dr.sato",
            "高橋 トメ",
            "たかはし とめ",
            "1931-02-20",
            "鹿沼市上田町",
            &["ph.mori", "cw.nakamura", "cm.watanabe"],
        )
        .await?;
    s.care_profile("dr.sato", tome_patient, "鹿沼市", &[Device::Suction]).await?;
    s.post("cw.nakamura", tome, "本日の訪問介護で、食事量が半分ほどでした。水分はとれています。").await?;
    let last = s.post("dr.sato", tome, "了解です。明日臨時で訪問します。").await?;
    s.read("cw.nakamura", tome, last).await?;

    // Groups and a connection.
    let conf = s
        .group("dr.sato", "宇都宮市 多職種連携会議", &["vn.suzuki", "cm.watanabe", "ph.tanaka", "msw.ito", "dr.kato"])
        .await?;
    s.post("cm.watanabe", conf, "次回の多職種連携会議は12月10日（水）19時から、市役所会議室とオンライン併用です。")
        .await?;
    let staff = s.group("vn.suzuki", "ひばり訪問看護 スタッフ", &["vn.takahashi", "pt.yamamoto"]).await?;
    s.post("vn.suzuki", staff, "今週末のオンコール当番は高橋さんです。よろしくお願いします。").await?;
    let (tanaka, tanaka_token) = s.who("ph.tanaka")?;
    s.connections
        .request_connection(authed(
            RequestConnectionRequest { idempotency_key: idempotency_key(), account_id: tanaka },
            &sato_token,
        )?)
        .await?;
    let room = s
        .connections
        .accept_connection(authed(
            AcceptConnectionRequest { idempotency_key: idempotency_key(), account_id: sato },
            &tanaka_token,
        )?)
        .await?
        .into_inner()
        .room_id;
    s.post("dr.sato", room, "山田さんの利尿薬の件、主治医としてご本人に説明済みです。").await?;

    // Requests: visiting nursing for 高橋 トメ, accepted (the nurse joins her team); a respite
    // admission still waiting for the hospital's answer.
    let mut requests = CareRequestServiceClient::new(s.channel.clone());
    let send = |kind: CareRequestKind, title: &str, details: &str, to: Vec<u64>| SendCareRequestRequest {
        idempotency_key: idempotency_key(),
        kind: kind as i32,
        patient_id: Some(tome_patient),
        title: title.into(),
        details: details.into(),
        facility_ids: to,
    };
    let nursing = send(
        CareRequestKind::Collaboration,
        "訪問看護の導入のお願い",
        "食事量が低下しています。週2回の訪問看護（体調観察・服薬確認）をお願いできますか。",
        vec![facilities[3]],
    );
    let sent = requests.send_care_request(authed(nursing, &sato_token)?).await?.into_inner();
    let nursing = sent.care_request.context("the sent care request")?.care_request_id;
    let accept = AnswerCareRequestRequest {
        idempotency_key: idempotency_key(),
        care_request_id: nursing,
        accept: true,
        note: "来週月曜から伺います。".into(),
    };
    requests.answer_care_request(authed(accept, &s.who("vn.suzuki")?.1)?).await?;
    let respite = send(
        CareRequestKind::Admission,
        "レスパイト入院のご相談",
        "ご家族の介護負担が大きく、2週間程度のレスパイト入院を希望されています。",
        vec![facilities[1]],
    );
    requests.send_care_request(authed(respite, &sato_token)?).await?;
    match border_remote {
        Some(remote) => Ok(Some(Some(s.border_patient(remote).await?))),
        None => Ok(Some(None)),
    }
}
