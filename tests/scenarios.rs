//! placeholder until scenario tests land
