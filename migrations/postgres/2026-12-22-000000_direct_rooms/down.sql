DROP TABLE direct_rooms;
