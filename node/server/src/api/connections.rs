//! The ConnectionService: professionals connect one to one (request, accept, decline, block).

use kizuna_proto::connections as pb;
use tonic::{Request, Response, Status};

use super::convert::person;
use super::shared::{Api, domain_status, unexpected};
use kizuna_domain::model::{Account, AccountId};
use kizuna_domain::{Command, HubView, Outcome, queries};

fn request_view(hub: &impl HubView, account: Account) -> pb::ConnectionRequest {
    let p = person(hub, &account);
    pb::ConnectionRequest {
        account_id: account.id.0,
        display_name: account.display_name,
        profession: p.profession as i32,
        facility: p.facility,
        hub: p.hub,
    }
}

#[tonic::async_trait]
impl pb::connection_service_server::ConnectionService for Api {
    async fn request_connection(
        &self,
        req: Request<pb::RequestConnectionRequest>,
    ) -> Result<Response<pb::RequestConnectionResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::RequestConnection { to: AccountId(r.account_id) };
        self.signed_write(&req, r.idempotency_key, cmd).await?;
        Ok(Response::new(pb::RequestConnectionResponse {}))
    }

    async fn accept_connection(
        &self,
        req: Request<pb::AcceptConnectionRequest>,
    ) -> Result<Response<pb::AcceptConnectionResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::AcceptConnection { from: AccountId(r.account_id) };
        match self.signed_write(&req, r.idempotency_key, cmd).await? {
            Outcome::Room(room) => Ok(Response::new(pb::AcceptConnectionResponse { room_id: room.0 })),
            other => Err(unexpected(other)),
        }
    }

    async fn decline_connection(
        &self,
        req: Request<pb::DeclineConnectionRequest>,
    ) -> Result<Response<pb::DeclineConnectionResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::DeclineConnection { from: AccountId(r.account_id) };
        self.signed_write(&req, r.idempotency_key, cmd).await?;
        Ok(Response::new(pb::DeclineConnectionResponse {}))
    }

    async fn block_connection(
        &self,
        req: Request<pb::BlockConnectionRequest>,
    ) -> Result<Response<pb::BlockConnectionResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::BlockConnection { other: AccountId(r.account_id) };
        self.signed_write(&req, r.idempotency_key, cmd).await?;
        Ok(Response::new(pb::BlockConnectionResponse {}))
    }

    async fn list_connection_requests(
        &self,
        req: Request<pb::ListConnectionRequestsRequest>,
    ) -> Result<Response<pb::ListConnectionRequestsResponse>, Status> {
        let (me, _) = self.authenticate(&req).await?;
        let answer = self.query(|hub| {
            let found = queries::connection_requests(hub, me).map_err(domain_status)?;
            let views = |list: Vec<Account>| list.into_iter().map(|a| request_view(hub, a)).collect();
            Ok(pb::ListConnectionRequestsResponse { incoming: views(found.incoming), outgoing: views(found.outgoing) })
        })?;
        Ok(Response::new(answer))
    }
}
