// @generated automatically by Diesel CLI.

diesel::table! {
    messages (id) {
        id -> BigInt,
        room -> Text,
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
