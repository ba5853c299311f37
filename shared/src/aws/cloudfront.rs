//! CloudFront through the SDK: the adapter of [`EdgeCache`], `CreateInvalidation` on the
//! distribution in front of the jwks function.

use async_trait::async_trait;
use aws_sdk_cloudfront::error::SdkError;
use aws_sdk_cloudfront::types::{InvalidationBatch, Paths};

use super::{describe, kept};
use crate::ports::{EdgeCache, NotifyError};

const OPERATION: &str = "CreateInvalidation";

/// One CloudFront distribution. Bounded in time like every client (the SDK configuration's
/// attempt and operation timeouts); the SDK's retries resend the same `CallerReference`, which
/// CloudFront answers with the invalidation already created, never a second one.
#[derive(Clone, Debug)]
pub struct CloudFrontEdgeCache {
    client: aws_sdk_cloudfront::Client,
    distribution_id: String,
}

impl CloudFrontEdgeCache {
    /// The distribution `distribution_id` (`JWKS_DISTRIBUTION_ID`).
    pub fn new(config: &aws_config::SdkConfig, distribution_id: impl Into<String>) -> Self {
        CloudFrontEdgeCache {
            client: aws_sdk_cloudfront::Client::new(config),
            distribution_id: distribution_id.into(),
        }
    }
}

#[async_trait]
impl EdgeCache for CloudFrontEdgeCache {
    async fn invalidate(&self, reference: &str, paths: &[String]) -> Result<String, NotifyError> {
        let build = |e: aws_smithy_types::error::operation::BuildError| NotifyError::Failed {
            operation: OPERATION,
            message: e.to_string(),
            source: kept(e),
        };
        let quantity =
            i32::try_from(paths.len()).map_err(|_| NotifyError::failed(OPERATION, "too many paths"))?;
        let paths =
            Paths::builder().quantity(quantity).set_items(Some(paths.to_vec())).build().map_err(build)?;
        let batch =
            InvalidationBatch::builder().caller_reference(reference).paths(paths).build().map_err(build)?;
        let created = self
            .client
            .create_invalidation()
            .distribution_id(&self.distribution_id)
            .invalidation_batch(batch)
            .send()
            .await;
        match created {
            Ok(out) => Ok(out.invalidation().map(|i| i.id().to_owned()).unwrap_or_default()),
            Err(SdkError::TimeoutError(_)) => Err(NotifyError::Timeout { operation: OPERATION }),
            Err(e) => {
                Err(NotifyError::Failed { operation: OPERATION, message: describe(&e), source: kept(e) })
            }
        }
    }
}
