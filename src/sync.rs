//! Locking shared by the API and the host: a [`Mutex`] whose holder panicked is still used.
//!
//! Every critical section in this crate leaves its data consistent before it can panic
//! (they assign whole values, push or pop), so a poisoned lock holds usable data; failing
//! every later request on it would turn one bug into an outage.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, taking over the data of a holder that panicked (see the module's note).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_whose_holder_panicked_is_still_usable() {
        let shared = std::sync::Arc::new(Mutex::new(1));
        let holder = shared.clone();
        let panicked = std::thread::spawn(move || {
            let mut value = lock(&holder);
            *value = 2;
            panic!("the holder fails");
        })
        .join();
        assert!(panicked.is_err());
        assert!(shared.is_poisoned());
        assert_eq!(*lock(&shared), 2);
    }
}
