-- A command's history (its attempts' count and, when it is dead-lettered, their detail) is read
-- by command id: without this index each read scans every attempt ever recorded.
CREATE INDEX payment_attempts_command ON payment_attempts (command_id, id);
