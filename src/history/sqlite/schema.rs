// The tables of `migrations/sqlite`, as diesel sees them.

diesel::table! {
    messages (id) {
        id -> BigInt,
        room -> Text,
        user_name -> Text,
        text -> Text,
        created_at -> BigInt,
        kind -> Text,
        target -> Nullable<BigInt>,
        reply_to -> Nullable<BigInt>,
        emoji -> Nullable<Text>,
        reaction_on -> Nullable<Bool>,
        idempotency_key -> Nullable<Text>,
        edited_text -> Nullable<Text>,
        edited_at -> Nullable<BigInt>,
        deleted -> Bool,
        action -> Nullable<Text>,
        subject -> Nullable<Text>,
        until_at -> Nullable<BigInt>,
        reason -> Nullable<Text>,
    }
}

diesel::table! {
    bans (room, user_name) {
        room -> Text,
        user_name -> Text,
        until_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    mutes (room, user_name) {
        room -> Text,
        user_name -> Text,
        until_at -> BigInt,
    }
}

diesel::table! {
    moderation_audit (id) {
        id -> BigInt,
        room -> Text,
        action -> Text,
        subject -> Text,
        by_user -> Text,
        target -> Nullable<BigInt>,
        until_at -> Nullable<BigInt>,
        reason -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    reactions (message_id, emoji, user_name) {
        message_id -> BigInt,
        emoji -> Text,
        user_name -> Text,
    }
}

diesel::table! {
    read_markers (room, user_name) {
        room -> Text,
        user_name -> Text,
        last_read -> BigInt,
    }
}

diesel::table! {
    write_check (id) {
        id -> Integer,
        checked_at -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    messages,
    reactions,
    read_markers,
    write_check,
    bans,
    mutes,
    moderation_audit,
);
