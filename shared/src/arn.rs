//! KMS key ARNs across regions. A multi-Region key and its replicas share key material and
//! key id (`mrk-…`); their ARNs differ only in the Region field (KMS developer guide,
//! "Multi-Region key identifiers"). The keyring records the home (primary) ARN; each region
//! signs with its own replica, whose ARN [`regional_arn`] derives.

/// The ARN of the same multi-Region key in `region`: `arn:PARTITION:kms:REGION:ACCOUNT:key/mrk-…`
/// with the Region field replaced. `None` for anything but a multi-Region key ARN (a
/// single-Region key exists in one region only).
pub fn regional_arn(arn: &str, region: &str) -> Option<String> {
    let fields: Vec<&str> = arn.splitn(6, ':').collect();
    match fields.as_slice() {
        ["arn", partition, "kms", _, account, resource]
            if resource.starts_with("key/mrk-") && !region.is_empty() && !region.contains(':') =>
        {
            Some(format!("arn:{partition}:kms:{region}:{account}:{resource}"))
        }
        _ => None,
    }
}

/// Whether two key ARNs name the same KMS key: the same ARN, or one multi-Region key's ARNs
/// in two regions (they differ only in the Region field).
pub fn same_kms_key(a: &str, b: &str) -> bool {
    a == b || arn_region(b).and_then(|region| regional_arn(a, region)).is_some_and(|in_b| in_b == b)
}

/// The region field of an ARN, if it has one.
pub fn arn_region(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|region| !region.is_empty())
}

/// The key ARN a function in `region` signs with: the local replica of a multi-Region key, or
/// the ARN itself (a single-Region key, or a multi-Region key already in `region`).
pub fn local_key_arn(arn: &str, region: Option<&str>) -> String {
    match region {
        Some(region) if arn_region(arn) != Some(region) => {
            regional_arn(arn, region).unwrap_or_else(|| arn.to_owned())
        }
        _ => arn.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regional_arns_replace_only_the_region_of_multi_region_keys() {
        let arn = "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";
        assert_eq!(
            regional_arn(arn, "eu-west-1").as_deref(),
            Some("arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab")
        );
        let china = "arn:aws-cn:kms:cn-north-1:111122223333:key/mrk-1";
        assert_eq!(
            regional_arn(china, "cn-northwest-1").as_deref(),
            Some("arn:aws-cn:kms:cn-northwest-1:111122223333:key/mrk-1")
        );
        // A single-Region key has no replica anywhere.
        assert_eq!(regional_arn("arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab", "eu-west-1"), None);
        assert_eq!(regional_arn("mrk-1234", "eu-west-1"), None);
        assert_eq!(regional_arn(arn, ""), None);
        assert_eq!(regional_arn(arn, "eu:west"), None);
    }

    #[test]
    fn local_key_arn_is_the_replica_in_the_functions_region() {
        let home = "arn:aws:kms:us-east-1:111122223333:key/mrk-1";
        assert_eq!(
            local_key_arn(home, Some("ap-southeast-2")),
            "arn:aws:kms:ap-southeast-2:111122223333:key/mrk-1"
        );
        assert_eq!(local_key_arn(home, Some("us-east-1")), home);
        assert_eq!(local_key_arn(home, None), home);
        let single = "arn:aws:kms:us-east-1:111122223333:key/1234";
        assert_eq!(local_key_arn(single, Some("eu-west-1")), single, "nothing to resolve to");
        assert_eq!(arn_region(home), Some("us-east-1"));
    }

    #[test]
    fn a_multi_region_key_is_the_same_key_in_every_region() {
        let home = "arn:aws:kms:us-east-1:111122223333:key/mrk-1";
        let eu = "arn:aws:kms:eu-west-1:111122223333:key/mrk-1";
        assert!(same_kms_key(home, eu) && same_kms_key(eu, home) && same_kms_key(home, home));
        assert!(!same_kms_key(home, "arn:aws:kms:eu-west-1:111122223333:key/mrk-2"));
        assert!(!same_kms_key(home, "arn:aws:kms:eu-west-1:999999999999:key/mrk-1"), "another account");
        let single = "arn:aws:kms:us-east-1:111122223333:key/1234";
        assert!(
            !same_kms_key(single, "arn:aws:kms:eu-west-1:111122223333:key/1234"),
            "single-Region keys are regional"
        );
    }
}
