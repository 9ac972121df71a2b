//! migrd
