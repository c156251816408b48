//! The ConnectionService: professionals connect one to one (request, accept, decline, block).

use kizuna_proto::connections as pb;
use tonic::{Request, Response, Status};

use super::shared::{Api, unexpected};
use kizuna_domain::model::AccountId;
use kizuna_domain::{Command, Outcome};

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
}
