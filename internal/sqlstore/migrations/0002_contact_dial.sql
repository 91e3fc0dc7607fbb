-- The dialling forms of a contact's numbers (directory.Contact.MobileDial,
-- HomeDial, BusinessDial), kept next to the numbers as entered. Rows written
-- before this migration get '' until they are next written.
ALTER TABLE contact ADD COLUMN mobile_dial TEXT NOT NULL DEFAULT '';
ALTER TABLE contact ADD COLUMN home_dial TEXT NOT NULL DEFAULT '';
ALTER TABLE contact ADD COLUMN business_dial TEXT NOT NULL DEFAULT '';
