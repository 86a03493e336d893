-- A person's name for a mailbox, shown in the admin lists. Postfix and Dovecot ignore it.
ALTER TABLE virtual_users ADD COLUMN display_name varchar(255) NOT NULL DEFAULT '';
