VAR coins = 0
-> shop
== shop ==
~ coins = coins + 1
A shop full of lamps.
* {coins > 0} [Buy a lamp] -> lamp
* [Leave] -> street
== lamp ==
{coins > 2: You are rich.|You count your last coin.}
{coins > 5: -> palace}
The lamp glows.
-> END
== street ==
The street is dark.
-> END
== palace ==
A palace of light.
-> END
