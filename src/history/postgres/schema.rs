//! The tables of `migrations/postgres`, as diesel sees them. Only the ones
//! queried through diesel's DSL are here; the room upsert and the node
//! tables are plain SQL.

diesel::table! {
    messages (id) {
        id -> BigInt,
        room -> Text,
        seq -> BigInt,
        user_name -> Text,
        text -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    write_check (id) {
        id -> Integer,
        checked_at -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(messages, write_check,);
