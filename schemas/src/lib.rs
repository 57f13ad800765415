//! Switchyard schemas.
