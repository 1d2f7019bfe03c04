DROP TABLE write_check;
