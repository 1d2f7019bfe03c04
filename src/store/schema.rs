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
