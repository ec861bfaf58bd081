-- A review case row is written when the case opens and updated in the same
-- transaction with the decision, then again at each later event. With full
-- pages every update lands on another page and adds an entry to each index;
-- room left on the page keeps the update on it (a HOT update, no index
-- write). Applies to pages written from now on.
ALTER TABLE cases SET (fillfactor = 60);
