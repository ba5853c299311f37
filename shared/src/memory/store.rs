//! The Secrets Manager twin: the keyring secret, versioned, with compare-and-swap.

use super::*;

#[derive(Default)]
pub(super) struct StoreState {
    /// (version id, text), oldest first.
    pub(super) versions: Vec<(String, String)>,
    pub(super) current: Option<usize>,
    pub(super) unavailable: bool,
    /// The last successful write (expected version, text, new version): like the
    /// ClientRequestToken of the real store, repeating it answers the same version.
    pub(super) last_write: Option<(Option<String>, String, String)>,
    /// Reads still to answer with the version before the current one (replication lag).
    pub(super) lagging_reads: usize,
}

/// Which secret a [`MemoryStore`] is, and whom its calls are authorized as.
pub(super) struct SecretAccess {
    pub(super) authorization: Mutex<Authorization>,
    pub(super) secret_arn: String,
    /// The caller of the port methods: the single-Region stack's rotate role, the one role
    /// that both reads and writes the keyring.
    pub(super) caller: String,
}

impl Default for SecretAccess {
    fn default() -> Self {
        let authorization = Authorization::default();
        let (secret_arn, caller) = authorization
            .stack("us-east-1")
            .map(|stack| (stack.keyring_secret_arn.clone(), stack.rotate_role().to_owned()))
            .unwrap_or_default();
        SecretAccess { authorization: Mutex::new(authorization), secret_arn, caller }
    }
}

/// Secrets Manager twin: versioned, with compare-and-swap promotion.
///
/// It is the keyring secret of the single-Region test stack ([`crate::test_stacks`]); every
/// call is authorized against the caller's IAM policies (the secret has no resource policy).
/// The port methods call as that stack's rotate role; [`MemoryStore::as_principal`] calls as
/// another. Reads of the secret's KMS data key through Secrets Manager are not modelled.
#[derive(Default)]
pub struct MemoryStore {
    pub(super) state: Mutex<StoreState>,
    pub(super) reads: Mutex<u64>,
    pub(super) access: SecretAccess,
}

impl MemoryStore {
    /// A store holding no secret yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store whose current document is `text` (for corrupted-keyring tests).
    pub fn with_document(text: &str) -> Self {
        let store = Self::default();
        {
            let mut state = lock(&store.state);
            state.versions.push(("v-seed".to_owned(), text.to_owned()));
            state.current = Some(0);
        }
        store
    }

    /// Make every call fail as if Secrets Manager were down (or back up).
    pub fn set_unavailable(&self, unavailable: bool) {
        lock(&self.state).unavailable = unavailable;
    }

    /// Remove the current version, as if the secret's value were deleted by hand.
    pub fn set_current_to_nothing(&self) {
        lock(&self.state).current = None;
    }

    /// Answer the next `reads` loads with the version before the current one, as a read that
    /// does not see a write yet (eventual consistency).
    pub fn lag_reads(&self, reads: usize) {
        lock(&self.state).lagging_reads = reads;
    }

    /// How many loads were answered.
    pub fn reads(&self) -> u64 {
        *lock(&self.reads)
    }

    /// How many versions were written (a repeated identical write adds none).
    pub fn version_count(&self) -> usize {
        lock(&self.state).versions.len()
    }

    /// The current document, if any.
    pub fn current_text(&self) -> Option<String> {
        let state = lock(&self.state);
        state.current.map(|i| state.versions[i].1.clone())
    }
}

impl MemoryStore {
    /// Calls as `principal` (a role ARN): for tests of what a role may not do.
    pub fn as_principal(self: &Arc<Self>, principal: &str) -> StoreCaller {
        StoreCaller { store: Arc::clone(self), principal: principal.to_owned() }
    }

    /// The secret's ARN.
    pub fn secret_arn(&self) -> &str {
        &self.access.secret_arn
    }

    /// Every call refused so far.
    pub fn denials(&self) -> Vec<String> {
        lock(&self.access.authorization).denials.clone()
    }

    pub(super) fn authorize(&self, caller: &str, actions: &[&str]) -> Result<(), StoreError> {
        for action in actions {
            let request = Request::new(caller, *action, self.access.secret_arn.as_str());
            decide(&self.access.authorization, &request, None)
                .map_err(|refused| StoreError::unavailable(format!("AccessDeniedException: {refused}")))?;
        }
        Ok(())
    }

    /// `GetSecretValue` as `caller`.
    pub fn load_as(&self, caller: &str) -> Result<Option<StoredDocument>, StoreError> {
        self.authorize(caller, &["secretsmanager:GetSecretValue"])?;
        self.load_unchecked()
    }

    /// `PutSecretValue` and `UpdateSecretVersionStage` (the adapter's compare-and-swap) as
    /// `caller`.
    pub fn compare_and_swap_as(
        &self,
        caller: &str,
        expected: Option<&str>,
        text: &str,
    ) -> Result<String, StoreError> {
        self.authorize(
            caller,
            &["secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage"],
        )?;
        self.compare_and_swap_unchecked(expected, text)
    }
}

#[async_trait]
impl KeyringStore for MemoryStore {
    async fn load(&self) -> Result<Option<StoredDocument>, StoreError> {
        self.load_as(&self.access.caller)
    }

    async fn compare_and_swap(&self, expected: Option<&str>, text: &str) -> Result<String, StoreError> {
        self.compare_and_swap_as(&self.access.caller, expected, text)
    }
}

/// [`MemoryStore`] called by one principal.
pub struct StoreCaller {
    pub(super) store: Arc<MemoryStore>,
    pub(super) principal: String,
}

#[async_trait]
impl KeyringStore for StoreCaller {
    async fn load(&self) -> Result<Option<StoredDocument>, StoreError> {
        self.store.load_as(&self.principal)
    }

    async fn compare_and_swap(&self, expected: Option<&str>, text: &str) -> Result<String, StoreError> {
        self.store.compare_and_swap_as(&self.principal, expected, text)
    }
}

impl MemoryStore {
    pub(super) fn load_unchecked(&self) -> Result<Option<StoredDocument>, StoreError> {
        *lock(&self.reads) += 1;
        let mut state = lock(&self.state);
        if state.unavailable {
            return Err(StoreError::unavailable("simulated outage"));
        }
        if state.lagging_reads > 0 {
            state.lagging_reads -= 1;
            let behind = state.current.and_then(|i| i.checked_sub(1));
            return Ok(behind.map(|i| StoredDocument {
                version_id: state.versions[i].0.clone(),
                text: state.versions[i].1.clone(),
            }));
        }
        Ok(state.current.map(|i| StoredDocument {
            version_id: state.versions[i].0.clone(),
            text: state.versions[i].1.clone(),
        }))
    }

    pub(super) fn compare_and_swap_unchecked(
        &self,
        expected: Option<&str>,
        text: &str,
    ) -> Result<String, StoreError> {
        let mut state = lock(&self.state);
        if state.unavailable {
            return Err(StoreError::unavailable("simulated outage"));
        }
        let current_id = state.current.map(|i| state.versions[i].0.clone());
        if let Some((last_expected, last_text, last_id)) = &state.last_write {
            let repeat = last_expected.as_deref() == expected && last_text == text;
            if repeat && current_id.as_deref() == Some(last_id.as_str()) {
                return Ok(last_id.clone());
            }
        }
        if current_id.as_deref() != expected {
            return Err(StoreError::Conflict);
        }
        let id = format!("v-{}", state.versions.len() + 1);
        state.versions.push((id.clone(), text.to_owned()));
        state.current = Some(state.versions.len() - 1);
        state.last_write = Some((expected.map(str::to_owned), text.to_owned(), id.clone()));
        Ok(id)
    }
}
