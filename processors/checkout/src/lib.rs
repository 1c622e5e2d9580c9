//! Checkout (issue 7, in progress): [`saga`] is the order saga's pure state machine. The
//! processor that joins checkout requests, inventory and payment answers and timers around it
//! (keyed by order id), the orders database and the shipping changes are not built yet.

pub mod saga;
