-- A contact manager written the way ui-engine's showcase is: domain objects (Contact), a
-- presenter per row (ContactRow, built by lua.ViewList through `itemWrapper`), a search field
-- that filters the list, and add / edit / delete through actions. Serve it with
--   luabroker --dir examples/contacts
-- (lua/ holds the code, viewdefs/ the templates; the built-in page, or a ui-engine frontend
-- in html/, renders it).

local model = require("contacts.model")
require("contacts.rows")

if not session.reloading then
    book = model.AddressBook:new({})
    book:add("Ada", "Lovelace", "ada@example.org", "555-0100")
    book:add("Grace", "Hopper", "grace@example.org", "")
    book:add("Alan", "Turing", "alan@example.org", "555-0199")
    session:createAppVariable(book)
    ui.log(1, "contact manager ready for session " .. session._sessionID)
end
