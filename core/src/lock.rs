//! One way to take a `std::sync::Mutex`: a lock poisoned by a panic is taken anyway.
//!
//! Every critical section in the runtime is a few assignments that leave the data consistent
//! even if a panic cuts them short, and a panicking handler must not take the worker down with
//! it, so a poisoned lock is recovered rather than propagated. An extension trait on the std
//! mutex rather than `parking_lot::Mutex` (which never poisons): it keeps every lock's type and
//! the dependency list as they are, and the choice is made in this one place.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// [`Mutex::lock`] that recovers a poisoned lock.
pub trait LockExt<T: ?Sized> {
    /// Takes the lock, whether or not a panic poisoned it.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> LockExt<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_is_taken_with_its_data() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let panicked = std::thread::spawn(move || {
            let mut g = m2.locked();
            *g = 2;
            panic!("poison the lock");
        })
        .join();
        assert!(panicked.is_err());
        assert!(m.is_poisoned());
        assert_eq!(*m.locked(), 2);
        *m.locked() = 3;
        assert_eq!(*m.locked(), 3);
    }
}
